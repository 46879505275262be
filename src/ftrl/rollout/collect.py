"""`ftrl sample`: collect training states from rollouts (bytedance/FTRL `Code/data_sample/data_sample.py`).

Every episode contributes its raw environment as state 0 and, after each tool-calling turn `t`, state `t`: the
history so far, the sub-answers still unsolved and the updated solve rate. The closing turn without a tool
call is not a state; states with nothing left to solve are kept, as in the reference. Rows are reference rows
(`Environment.to_row()`, split `train`) plus `index` (the environment's position in the input file),
`episode_id` (`<index>-<sample>`) and `state`.

Resumable: an episode's rows are written together when it ends, then its id is appended to `OUT.progress`.
On restart, rows of episodes missing from the progress log (a crash between the two writes, or a torn tail)
are dropped and those episodes run again, so nothing is lost or duplicated.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ftrl.env.domains import load_source
from ftrl.env.record import Environment
from ftrl.jsonl import JsonlAppender, iter_jsonl, require_key, write_jsonl_atomic
from ftrl.progress import make_progress
from ftrl.rollout.engine import EpisodeResult, RolloutConfig, run_rollouts
from ftrl.rollout.load import PolicySpec, load_policy
from ftrl.rollout.policy import Policy
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import SamplingConfig

PROGRESS_SUFFIX = ".progress"


def episode_states(result: EpisodeResult, index: int) -> list[Environment]:
    """The training states of one finished episode, in turn order."""
    env = result.env
    if result.error is not None and not result.messages:
        return []  # it never started: nothing to learn from
    start = env.pending_count
    extra = {**env.extra, "index": index, "episode_id": result.key}
    states = [_state(env, env.messages, env.unsolved_set, env.solve_rate, extra, 0)]
    for point in result.state_points:
        left = sum(len(answers) for answers in point.unsolved_set.values())
        # fraction of the environment's original sub-answers produced so far (the reference's formula when
        # the input is a raw environment; also right when the input is itself a partly solved state)
        rate = env.solve_rate + (1.0 - env.solve_rate) * (start - left) / start if start else env.solve_rate
        states.append(
            _state(
                env,
                result.messages[: point.n_messages],
                point.unsolved_set,
                rate,
                extra,
                point.turn,
            )
        )
    return states


def _state(
    env: Environment,
    messages: list,
    unsolved: dict,
    rate: float,
    extra: dict,
    turn: int,
) -> Environment:
    return Environment(
        messages=list(messages),
        tools=env.tools,
        codes=env.codes,
        unsolved_set=unsolved,
        solve_rate=rate,
        answer=env.answer,
        data_source=env.data_source,
        split="train",
        extra={**extra, "state": turn},
    )


def finished_episodes(out: Path) -> set[str]:
    """Episode ids whose rows are complete in `out`; cleans rows of unfinished episodes out of the file."""
    progress = out.with_name(out.name + PROGRESS_SUFFIX)
    if not out.exists():
        progress.unlink(missing_ok=True)
        return set()
    writer = "`ftrl sample`"
    logged = (
        {
            require_key(progress, line, row, "episode_id", str, writer): require_key(
                progress, line, row, "states", int, writer
            )
            for line, row in iter_jsonl(progress, allow_torn_tail=True)
        }
        if progress.exists()
        else {}
    )
    rows = []
    counts: dict[str, int] = {}
    for line, row in iter_jsonl(out, allow_torn_tail=True):
        key = require_key(out, line, row, "episode_id", str, writer)
        counts[key] = counts.get(key, 0) + 1
        rows.append(row)
    done = {key for key, states in logged.items() if counts.get(key, 0) == states}
    if len(done) != len(counts) or len(done) != len(logged):
        write_jsonl_atomic(out, [row for row in rows if row["episode_id"] in done])
        write_jsonl_atomic(
            progress,
            [{"episode_id": key, "states": counts.get(key, 0)} for key in sorted(done)],
        )
    return done


def collect(
    model: str | Path | PolicySpec,
    envs: str | Path,
    out: str | Path,
    *,
    n_per_env: int = 1,
    max_turns: int = 20,
    limit: int | None = None,
    workers: int = 0,
    timeout_s: float = 10.0,
    policy: Policy | None = None,
    console: Console | None = None,
) -> int:
    """Run (or resume) a collection; returns the number of states written by this run.

    A plain model spec samples at temperature 1.0 as the reference does; pass a `PolicySpec` to choose.
    """
    console = console or Console(stderr=True)
    spec = (
        model
        if isinstance(model, PolicySpec)
        else PolicySpec(model=str(model), sampling=SamplingConfig(temperature=1.0))
    )
    source = load_source(envs)
    selected = source.envs[:limit] if limit is not None else source.envs
    out = Path(out)
    done = finished_episodes(out)
    jobs = [
        (f"{index}-{k}", env)
        for index, env in enumerate(selected)
        for k in range(n_per_env)
        if f"{index}-{k}" not in done
    ]
    if not jobs:
        console.print(f"[green]all {len(selected) * n_per_env} episodes already in {out}[/green]")
        return 0
    if done:
        console.print(f"resuming: {len(done)} episodes done, {len(jobs)} to go")
    policy = policy or load_policy(spec, selected)
    written = errors = 0
    runtime_config = RuntimeConfig(timeout_s=timeout_s, workers=workers)
    rollout = RolloutConfig(max_turns=max_turns, batch_size=spec.batch_size)
    with (
        ToolRuntime(runtime_config) as runtime,
        make_progress(console) as bar,
        JsonlAppender(out, allow_nan=False) as rows,  # a state never carries NaN or Infinity
        JsonlAppender(out.with_name(out.name + PROGRESS_SUFFIX)) as log,
    ):
        for result in run_rollouts(jobs, policy, runtime, rollout, source.episode_kwargs, bar, len(jobs)):
            states = episode_states(result, int(result.key.split("-")[0]))
            for state in states:
                rows.write(state.to_row())
            log.write(
                {"episode_id": result.key, "states": len(states), **({"error": result.error} if result.error else {})}
            )
            written += len(states)
            if result.error:
                errors += 1
                console.print(
                    f"[yellow]episode {result.key} (row {result.key.split('-')[0]}): {escape(result.error)}[/]"
                )
    console.print(f"wrote {written} states to {out}")
    if errors:
        console.print(
            f"[yellow]{errors} episode(s) ended early on a fault of their own (kept up to it; listed with their "
            f"error in {out.name}{PROGRESS_SUFFIX})[/]"
        )
    return written
