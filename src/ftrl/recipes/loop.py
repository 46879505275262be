"""`ftrl loop`: the paper's recipe, once: an optional warm start (SFT on gold trajectories), then rounds of
collect states with the current policy, train on them (RL), evaluate. `ftrl demo` is a preset of it.

Layout of `DIR`: `round_0/eval/` (the starting model), `warm_start/` (`model/`, `eval/`), and per round
`round_<k>/` with `envs.jsonl` (when rounds draw their own environments), `states.jsonl`, `train/` and `eval/`.
`DIR/loop_state.json` records finished stages, so a killed loop resumes at the round it was in (that round's
collection and training resume from their own files). Each stage's seconds are recorded with it.

Collection and evaluation call `ftrl.rollout.collect.collect` and `ftrl.eval.run.evaluate` (the functions
behind `ftrl sample` and `ftrl eval`); collection, evaluation and the warm start are injectable, which the tests use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from ftrl.jsonl import atomic_path
from ftrl.provenance import describe_model
from ftrl.recipes.curriculum import CurriculumConfig, PassRates
from ftrl.settings import Engine, results_identity, setting, setting_table
from ftrl.trackers import parse_report_to
from ftrl.train.config import SFTConfig, TrainConfig, make_config

if TYPE_CHECKING:
    from ftrl.construction.config import BuildConfig
    from ftrl.rollout.load import PolicySpec

#: `(model, environments, states file to write, round) -> None`.
Collect = Callable[[str, str, Path, int], None]
#: `(model, environments, output folder) -> {"solve_p", "solve_r", "solve_f1", ...}`.
Evaluate = Callable[[str, str, Path], dict[str, float]]
#: `(model, output folder) -> warm-started model folder`.
WarmStart = Callable[[str, Path], str]

STATE_FILE = "loop_state.json"
METRICS = ("solve_p", "solve_r", "solve_f1")


@dataclass(kw_only=True)
class LoopConfig:
    """Every knob of `ftrl loop`; each field's help is its flag's help. `train` and `warm_start` are the configs
    of `ftrl train` and `ftrl sft`; the loop sets their model, data (envs), output folder, trackers and (train)
    seed (`LOOP_SETS`)."""

    model: str = setting("embedded", "Starting model: `embedded`, a local HF model folder or a cached hub id.")
    envs: str = setting("", "Training environments to collect states from.", results=False)
    eval_envs: str = setting("", "Held-out environments for Solve-P/R/F1.", results=False)
    out: str = setting("runs/loop", "Loop directory (resumable: loop_state.json).", results=False)
    rounds: int = setting(3, "Collect -> train -> evaluate rounds (more rounds extend a finished loop).", results=False)
    seed: int = setting(0, "Seed of round k's collection and training is this plus k.")
    max_new_tokens: int = setting(
        512, "Tokens per turn when collecting and evaluating (training: --train-max-new-tokens)."
    )
    max_turns: int = setting(20, "Turns per episode when collecting and evaluating.")
    collect_temperature: float = setting(
        1.0, "Sampling temperature when collecting states (the reference samples at 1.0)."
    )
    batch_size: int = setting(
        16, "Episodes a local model decodes together when collecting and evaluating.", results=False
    )
    engine: Engine = setting(
        "auto",
        "Generation engine of collection and evaluation: kvgen (fp32), int8 (kvgen over int8 per-channel weights: "
        "faster on a CPU, a different model: benchmarks/RESULTS.md), hf or auto. int8 also makes RL sample with "
        "int8; otherwise RL samples with --train.engine.",
    )
    envs_per_round: int = setting(
        0,
        "0: every round collects from all of --envs; N: round k collects from environments (k-1)N .. kN-1 of "
        "--envs, so no round sees another's.",
    )
    eval_every_round: bool = setting(
        True, "Evaluate after every round; off: only after the last one (the start and warm start always are)."
    )
    report_to: str = setting(
        "",
        "Send the warm start's and every round's training metrics to these trackers: tensorboard, wandb, mlflow, "
        "trackio (comma-separated; optional extras); files go under each run's trackers/.",
        results=False,
    )
    train: TrainConfig = setting_table(
        lambda: make_config("cpu"), "RL of each round (`ftrl train`'s config; the loop sets model, data, out, seed)."
    )
    warm_start: SFTConfig = setting_table(
        lambda: SFTConfig(envs="", epochs=1, lr=5e-5),
        "Supervised warm start before round 1 (`ftrl sft`'s config; the loop sets model and out); no envs: none.",
    )
    curriculum: CurriculumConfig = setting_table(
        CurriculumConfig,
        "Environments built for the learner: probe, filter by pass rate, move difficulty (`ftrl.recipes.curriculum`).",
    )

    def __post_init__(self) -> None:
        parse_report_to(self.report_to)

    def results_settings(self) -> dict[str, Any]:
        """What decides the rounds already done, for the resume check: every field but those declared with
        `results=False` (more rounds extend a loop; paths, batch sizes and trackers change nothing), the model by
        content."""
        return {**results_identity(self), "model": describe_model(self.model)}

    def policy(self, model: str, temperature: float = 0.0, seed: int = 0) -> PolicySpec:
        """How collection (sampled) and evaluation (greedy) run a model."""
        from ftrl.rollout.load import PolicySpec
        from ftrl.settings import SamplingConfig

        sampling = SamplingConfig(temperature=temperature, max_new_tokens=self.max_new_tokens, seed=seed)
        return PolicySpec(model=model, sampling=sampling, batch_size=self.batch_size, engine=self.engine)

    def run_warm_start(self, model: str, out: Path, console: Console | None = None) -> str:
        """Supervised warm start on gold trajectories (`ftrl sft`); returns the saved model folder."""
        from ftrl.train.sft import sft
        from ftrl.train.trainer import FINAL_MODEL

        if (out / FINAL_MODEL / "config.json").exists():  # finished before a crash: keep it
            return str(out / FINAL_MODEL)
        config = replace(self.warm_start, model=model, out=str(out), report_to=self.report_to)
        return str(sft(config, console=console))

    def sample_states(
        self, model: str, envs: str, out: Path, round_number: int, console: Console | None = None
    ) -> None:
        """Collect trajectory states with the current policy (`ftrl sample`), seeded by the round."""
        from ftrl.rollout.collect import collect

        spec = self.policy(model, self.collect_temperature, self.seed + round_number)
        collect(spec, envs, out, max_turns=self.max_turns, console=console)

    def evaluation(self, model: str, envs: str, out: Path, console: Console | None = None) -> dict[str, Any]:
        """Evaluate greedily (`ftrl eval`; resumes, and rewrites the summary when every episode is done)."""
        from ftrl.eval.run import evaluate

        return evaluate(self.policy(model), envs, out, max_turns=self.max_turns, console=console)

    def train_config(self, model: str, states: Path, out: Path, round_number: int) -> TrainConfig:
        """Round `round_number`'s RL: `train` with the fields the loop sets (`LOOP_SETS`)."""
        return replace(
            self.train,
            model=model,
            data=str(states),
            out=str(out),
            seed=self.seed + round_number,
            report_to=self.report_to,
            engine="int8" if self.engine == "int8" else self.train.engine,
        )


#: Fields of the loop's sub-configs that the loop sets itself (`LoopConfig.train_config`, `run_warm_start`): they
#: have no flags.
LOOP_SETS = (
    "train.model",
    "train.data",
    "train.out",
    "train.seed",
    "train.report_to",
    "warm_start.model",
    "warm_start.out",
    "warm_start.report_to",
)


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(state, indent=2))


def round_dir(out: str | Path, number: int) -> Path:
    return Path(out) / f"round_{number}"


def round_envs(config: LoopConfig, number: int, folder: Path) -> str:
    """The environments round `number` collects from: all of `config.envs`, or its own slice of them."""
    if not config.envs_per_round:
        return config.envs
    from ftrl.env import read_envs, write_envs

    path = folder / "envs.jsonl"
    if not path.exists():
        first = (number - 1) * config.envs_per_round
        envs = read_envs(config.envs)[first : first + config.envs_per_round]
        if not envs:
            raise ValueError(f"round {number} needs environments {first}.. of {config.envs}, which has fewer")
        write_envs(path, envs)
    return str(path)


def run_loop(
    config: LoopConfig,
    collect: Collect | None = None,
    evaluate: Evaluate | None = None,
    console: Console | None = None,
    warm_start: WarmStart | None = None,
    *,
    pass_rates: Callable[[str, int], PassRates] | None = None,
    build: BuildConfig | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the rounds; returns one row per model: the start model (round 0), the warm start if
    configured (labelled "warm start"), then each round (scores only where it was evaluated).

    With `config.curriculum`, `pass_rates(model, round)` probes states (default: the model itself, sampled as
    training samples) and `build` is what each round's environments are built like (default: the procedural
    build recorded beside `config.envs`; none: the round's states come from `config.envs`)."""
    from ftrl.recipes.curriculum import build_base, policy_pass_rates
    from ftrl.train.trainer import train  # torch: not needed to read a LoopConfig

    console = console or Console(stderr=True)
    collect = collect or (lambda model, envs, out, k: config.sample_states(model, envs, out, k, console))
    evaluate = evaluate or (lambda model, envs, out: _mean_scores(config.evaluation(model, envs, out, console)))
    warm_start = warm_start or (lambda model, out: config.run_warm_start(model, out, console))
    curriculum = config.curriculum
    base = build or (build_base(config.envs) if curriculum.curriculum and config.envs else None)
    probe = pass_rates or (
        lambda model, k: policy_pass_rates(model, config.train_config(model, Path(), Path(), k), curriculum.probe_n)
    )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {"rounds": []}
    if not state["rounds"]:
        console.rule("[bold]evaluate the starting model")
        started = time.perf_counter()
        scores = evaluate(config.model, config.eval_envs, round_dir(out, 0) / "eval")
        state["rounds"].append({"round": 0, "label": "start", "model": config.model, **scores, **_since(started)})
        _save(state_path, state)
    if config.warm_start.envs and "warm_start" not in state:
        folder = out / "warm_start"
        console.rule(f"[bold]warm start: SFT on the gold trajectories of {config.warm_start.envs}")
        started = time.perf_counter()
        model = warm_start(config.model, folder)
        trained = time.perf_counter()
        scores = evaluate(model, config.eval_envs, folder / "eval")
        seconds = {"seconds_train": round(trained - started, 1), **_since(started)}
        state["warm_start"] = {"round": 0, "label": "warm start", "model": model, **scores, **seconds}
        _save(state_path, state)
    while len(state["rounds"]) <= config.rounds:
        number = len(state["rounds"])
        previous = state["warm_start"] if number == 1 and "warm_start" in state else state["rounds"][-1]
        current, folder = previous["model"], round_dir(out, number)
        folder.mkdir(parents=True, exist_ok=True)
        console.rule(f"[bold]round {number}/{config.rounds}: collect states, train, evaluate")
        started = time.perf_counter()
        states = folder / "states.jsonl"
        row: dict[str, Any] = {"round": number, "label": f"round {number}"}
        if not states.exists():  # a finished collection is reused when the round is resumed
            if curriculum.curriculum and curriculum.envs_per_scenario and base is not None:
                envs = curriculum_envs(config, base, state.get("levels", {}), number, folder)
            else:
                envs = round_envs(config, number, folder)
            with atomic_path(states) as temporary:
                collect(current, envs, temporary, number)
        data = states
        if curriculum.curriculum:
            data, probed = curriculum_round(config, states, folder, probe(current, number))
            levels = state.get("levels", {})
            if base is not None and curriculum.envs_per_scenario:
                row |= {"levels": levels, "knobs": round_knobs(base, levels)}
                levels = updated_levels(curriculum, levels, base, probed["pass_rate_by_scenario"])
            row |= {"probe": probed, "levels_next": levels}
            console.print(curriculum_table(number, row))
        collected = time.perf_counter()
        model = str(train(config.train_config(current, data, folder / "train", number), console=console))
        trained = time.perf_counter()
        row["model"] = model
        if config.eval_every_round or number == config.rounds:
            row |= evaluate(model, config.eval_envs, folder / "eval")
        times = {"seconds_collect": collected - started, "seconds_train": trained - collected}
        row |= {key: round(value, 1) for key, value in times.items()} | _since(started)
        state["rounds"].append(row)
        if "levels_next" in row:
            state["levels"] = row["levels_next"]
        _save(state_path, state)
    rows = loop_rows(state)
    console.print(rounds_table(rows))
    plot_rounds(rows, out / "loop.png")
    return rows


def curriculum_envs(config: LoopConfig, base: BuildConfig, levels: dict[str, int], number: int, folder: Path) -> str:
    """Round `number`'s environments, built per scenario at its level (resumable; seeded by seed and round)."""
    from ftrl.env import write_envs
    from ftrl.recipes.curriculum import build_round

    path = folder / "envs.jsonl"
    if not path.exists():
        seed = 1000 * (config.seed + 1) + 10 * number
        envs = build_round(base, levels, config.curriculum.envs_per_scenario, seed, folder / "built")
        write_envs(path, envs)
    return str(path)


def curriculum_round(config: LoopConfig, states: Path, folder: Path, pass_rates: PassRates) -> tuple[Path, dict]:
    """Probe the round's states and keep those in the band (topped up with the nearest ones when fewer than a
    training step needs); returns the states to train on and the probe's report. Resumes from its files."""
    from ftrl.env import read_envs, write_envs
    from ftrl.recipes.curriculum import probe_and_filter

    kept, report_path = folder / "train_states.jsonl", folder / "probe.json"
    if kept.exists() and report_path.exists():
        return kept, json.loads(report_path.read_text())
    band, n = config.curriculum.band, config.curriculum.probe_n
    result = probe_and_filter(read_envs(states), pass_rates, band, n)
    train_states = result.kept
    needed = config.train.states_per_step
    if len(train_states) < needed:  # too few in the band for one step: the nearest to it fill up
        centre = (band[0] + band[1]) / 2
        rest = sorted(
            (env for env in result.states if env not in train_states),
            key=lambda env: abs(env.extra["pass_rate"] - centre),
        )
        train_states = train_states + rest[: needed - len(train_states)]
    write_envs(folder / "probe.jsonl", result.states)
    write_envs(kept, train_states)
    report = result.report() | {"trained_on": len(train_states)}
    with atomic_path(report_path) as temporary:
        temporary.write_text(json.dumps(report, indent=2))
    return kept, report


def round_knobs(base: BuildConfig, levels: dict[str, int]) -> dict[str, dict[str, str]]:
    from ftrl.recipes.curriculum import difficulty_at, knobs

    return {scenario: knobs(difficulty_at(base.difficulty, levels.get(scenario, 0))) for scenario in base.scenarios}


def updated_levels(
    curriculum: CurriculumConfig, levels: dict[str, int], base: BuildConfig, rates: dict[str, float]
) -> dict[str, int]:
    """Each built scenario's level one step toward the band (a scenario without probed states keeps its level)."""
    from ftrl.recipes.curriculum import next_level

    low, high = curriculum.min_level, curriculum.max_level
    return {
        scenario: next_level(levels.get(scenario, 0), rates[scenario], curriculum.band, low, high)
        if scenario in rates
        else levels.get(scenario, 0)
        for scenario in base.scenarios
    }


def curriculum_table(number: int, row: dict[str, Any]) -> Table:
    probed = row["probe"]
    table = Table("scenario", "level", "knobs", "pass rate", "next level", title=f"curriculum, round {number}")
    for scenario, rate in probed["pass_rate_by_scenario"].items():
        knobs = row.get("knobs", {}).get(scenario, {})
        table.add_row(
            scenario,
            str(row["levels"].get(scenario, 0)) if "levels" in row else "-",
            " ".join(f"{k} {v}" for k, v in knobs.items()) or "-",
            f"{rate:.2f}",
            str(row["levels_next"].get(scenario, "-")),
        )
    histogram = " ".join(f"{bin_}: {count}" for bin_, count in probed["histogram"].items())
    table.caption = (
        f"{probed['kept']} of {probed['probed']} states in the band, {probed['trained_on']} trained on; {histogram}"
    )
    return table


def compared_evaluations(out: str | Path) -> tuple[Path, Path]:
    """The two evaluations a loop (or demo) run is judged by: its warm start (else its start) and its last
    evaluated round, as folders."""
    out = Path(out)
    path = out / STATE_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not found (an `ftrl loop` or `ftrl demo` output folder has one)")
    state = json.loads(path.read_text())
    evaluated = [row for row in state["rounds"][1:] if "solve_f1" in row]
    if not evaluated:
        raise ValueError(f"{out}: no evaluated round yet")
    first = out / "warm_start" / "eval" if "warm_start" in state else round_dir(out, 0) / "eval"
    return first, round_dir(out, evaluated[-1]["round"]) / "eval"


def loop_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a loop state in order: start, warm start (if any), rounds."""
    return state["rounds"][:1] + ([state["warm_start"]] if "warm_start" in state else []) + state["rounds"][1:]


def _mean_scores(summary: dict[str, Any]) -> dict[str, float]:
    return {**{key: float(summary["mean"][key]) for key in METRICS}, "calls": summary["mean"].get("calls")}


def _since(started: float) -> dict[str, float]:
    return {"seconds": round(time.perf_counter() - started, 1)}


def _label(row: dict[str, Any]) -> str:
    return row.get("label") or ("start" if row["round"] == 0 else f"round {row['round']}")


def _shown(row: dict[str, Any], key: str) -> float | None:
    """A row's score, None for Solve-P of a model that made no call (no precision; rows without `calls` predate it)."""
    return None if key == "solve_p" and row.get("calls") == 0 else float(row[key])


def rounds_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("model", "P", "R", "F1", "min", "folder", title="ftrl loop (x100)", caption_justify="left")
    table.caption = "P, R, F1 = Solve-P, Solve-R, Solve-F1; min = minutes; n/a = no tool call, so no precision"
    for row in rows:
        values = [_shown(row, key) if key in row else "-" for key in METRICS]
        scores = ("n/a" if v is None else v if isinstance(v, str) else f"{v:.1f}" for v in values)
        minutes = f"{row['seconds'] / 60:.1f}" if "seconds" in row else "-"
        table.add_row(_label(row), *scores, minutes, row["model"])
    return table


def plot_rounds(rows: list[dict[str, Any]], out: Path) -> Path:
    from matplotlib.figure import Figure  # object API: the caller's pyplot backend is left alone

    evaluated = [row for row in rows if "solve_f1" in row]
    fig = Figure(figsize=(6, 4), constrained_layout=True)
    ax = fig.subplots()
    positions = range(len(evaluated))
    for key, label in zip(METRICS, ("Solve-P", "Solve-R", "Solve-F1"), strict=False):
        values = [_shown(row, key) for row in evaluated]  # None: no point (matplotlib leaves a gap for NaN)
        ax.plot(positions, [float("nan") if v is None else v for v in values], marker="o", label=label)
    ax.set_xticks(list(positions), [_label(row) for row in evaluated])
    ax.set_ylabel("held-out score (x100)")
    ax.legend()
    fig.savefig(out, dpi=110)
    return out
