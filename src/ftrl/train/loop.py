"""`ftrl loop`: the paper's iterative recipe: collect states with the current policy, train on them, evaluate.

Each round's artefacts live in `DIR/round_<k>/` (`states.jsonl`, `train/`, `eval/`) and `DIR/loop_state.json`
records finished rounds, so a killed loop resumes at the round it was in (and that round's training resumes
from its own checkpoints). Round 0 is the starting model's evaluation. With `warm_start_envs`, a supervised warm
start on their gold trajectories (`ftrl sft`) runs before round 1, in `DIR/warm_start/`, and is evaluated and
reported as its own row, so its effect is visible apart from the RL rounds.

Collection and evaluation call `ftrl.rollout.collect.collect` and `ftrl.eval.run.evaluate` (the functions
behind `ftrl sample` and `ftrl eval`); both are injectable, which the tests use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ftrl.jsonl import atomic_path
from ftrl.train.config import make_config

#: `(model, environments, states file to write) -> None`.
Collect = Callable[[str, str, Path], None]
#: `(model, environments, output folder) -> {"solve_p", "solve_r", "solve_f1", ...}`.
Evaluate = Callable[[str, str, Path], dict[str, float]]
#: `(model, output folder) -> warm-started model folder`.
WarmStart = Callable[[str, Path], str]

STATE_FILE = "loop_state.json"
METRICS = ("solve_p", "solve_r", "solve_f1")


@dataclass(kw_only=True)
class LoopConfig:
    """Every knob of `ftrl loop`; the `#:` comments are the flags' help."""

    #: Starting model.
    model: str = "embedded"
    #: Training environments to collect states from.
    envs: str = ""
    #: Held-out environments for Solve-P/R/F1.
    eval_envs: str = ""
    #: Loop directory (resumable: loop_state.json).
    out: str = "runs/loop"
    #: Collect -> train -> evaluate rounds.
    rounds: int = 3
    #: grpo | reinforce_pp | reinforce_pp_baseline.
    algo: str = "grpo"
    #: Training preset: paper or cpu.
    preset: str = "cpu"
    #: Training steps per round (default: one pass over the round's states).
    steps: int | None = None
    #: Train LoRA adapters.
    lora: bool = False
    #: Seed of round k's training is this plus k; also the warm start's.
    seed: int = 0
    #: Tokens per turn when collecting and evaluating (training uses --train-max-new-tokens or the preset's).
    max_new_tokens: int = 512
    #: Turns per episode when collecting and evaluating.
    max_turns: int = 20
    #: Tokens per sampled turn in training (default: the preset's).
    max_new_tokens_train: int | None = None
    #: Checkpoint training every N steps (default: the preset's).
    save_every: int | None = None
    #: Environments with gold calls: SFT on their gold trajectories before round 1, reported as its own row
    #: (default: no warm start).
    warm_start_envs: str | None = None
    #: Warm-start passes over the gold trajectories.
    warm_start_epochs: int = 1
    #: Warm-start learning rate.
    warm_start_lr: float = 5e-5
    #: Generation engine of collection and evaluation (kvgen, int8, hf or auto); training samples with int8 when
    #: this is int8, else with kvgen.
    engine: str = "auto"

    @property
    def train_engine(self) -> str:
        """The trainer's sampling engine for `engine` (the trainer has kvgen and int8 only)."""
        return "int8" if self.engine == "int8" else "kvgen"

    def warm_start(self, model: str, out: Path) -> str:
        """Supervised warm start on gold trajectories (`ftrl sft`); returns the saved model folder."""
        from ftrl.train.sft import SFTConfig, sft
        from ftrl.train.trainer import FINAL_MODEL

        if (out / FINAL_MODEL / "config.json").exists():  # finished before a crash: keep it
            return str(out / FINAL_MODEL)
        config = SFTConfig(
            model=model,
            envs=str(self.warm_start_envs),
            out=str(out),
            epochs=self.warm_start_epochs,
            lr=self.warm_start_lr,
            lora=self.lora,
            seed=self.seed,
        )
        return str(sft(config))

    def sample_states(self, model: str, envs: str, out: Path) -> None:
        """Collect trajectory states with the current policy (`ftrl sample`: temperature 1.0, one per env)."""
        from ftrl.rollout.collect import collect
        from ftrl.rollout.load import PolicySpec
        from ftrl.settings import SamplingConfig

        sampling = SamplingConfig(temperature=1.0, max_new_tokens=self.max_new_tokens)
        spec = PolicySpec(model=model, sampling=sampling, engine=self.engine)
        collect(spec, envs, out, max_turns=self.max_turns)

    def evaluate_model(self, model: str, envs: str, out: Path) -> dict[str, float]:
        """Evaluate greedily (`ftrl eval`); returns the mean Solve-P/R/F1 over scenarios."""
        from ftrl.eval.run import evaluate
        from ftrl.rollout.load import PolicySpec
        from ftrl.settings import SamplingConfig

        spec = PolicySpec(model=model, sampling=SamplingConfig(max_new_tokens=self.max_new_tokens), engine=self.engine)
        summary = evaluate(spec, envs, out, max_turns=self.max_turns)
        return {key: float(summary["mean"][key]) for key in METRICS}


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(state, indent=2))


def run_loop(
    config: LoopConfig,
    collect: Collect | None = None,
    evaluate: Evaluate | None = None,
    console: Console | None = None,
    warm_start: WarmStart | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the rounds; returns one row per evaluated model: the start model (round 0), the warm start
    if configured (labelled "warm start"), then each round."""
    from ftrl.train.trainer import train  # torch: not needed to read a LoopConfig

    console = console or Console(stderr=True)
    collect = collect or config.sample_states
    evaluate = evaluate or config.evaluate_model
    warm_start = warm_start or config.warm_start
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {"rounds": []}
    if not state["rounds"]:
        scores = evaluate(config.model, config.eval_envs, out / "round_0" / "eval")
        state["rounds"].append({"round": 0, "label": "start", "model": config.model, **scores})
        _save(state_path, state)
    if config.warm_start_envs and "warm_start" not in state:
        folder = out / "warm_start"
        console.print(f"[bold]warm start[/]: SFT on the gold trajectories of {config.warm_start_envs}")
        model = warm_start(config.model, folder)
        scores = evaluate(model, config.eval_envs, folder / "eval")
        state["warm_start"] = {"round": 0, "label": "warm start", "model": model, **scores}
        _save(state_path, state)
    while len(state["rounds"]) <= config.rounds:
        number = len(state["rounds"])
        previous = state["warm_start"] if number == 1 and "warm_start" in state else state["rounds"][-1]
        current = previous["model"]
        folder = out / f"round_{number}"
        states = folder / "states.jsonl"
        if not states.exists():  # a finished collection is reused when the round is resumed
            with atomic_path(states) as temporary:
                collect(current, config.envs, temporary)
        console.print(f"[bold]round {number}[/]: training on {states}")
        train_config = make_config(
            config.preset,
            model=current,
            data=str(states),
            out=str(folder / "train"),
            algo=config.algo,
            steps=config.steps,
            lora=config.lora,
            seed=config.seed + number,
            max_new_tokens=config.max_new_tokens_train,
            save_every=config.save_every,
            engine=config.train_engine,
        )
        model = str(train(train_config, console=console))
        scores = evaluate(model, config.eval_envs, folder / "eval")
        state["rounds"].append({"round": number, "label": f"round {number}", "model": model, **scores})
        _save(state_path, state)
    rows = state["rounds"][:1] + ([state["warm_start"]] if "warm_start" in state else []) + state["rounds"][1:]
    console.print(rounds_table(rows))
    plot_rounds(rows, out / "loop.png")
    return rows


def _label(row: dict[str, Any]) -> str:
    return row.get("label") or ("start" if row["round"] == 0 else f"round {row['round']}")


def rounds_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("model", "Solve-P", "Solve-R", "Solve-F1", "folder", title="ftrl loop (x100)")
    for row in rows:
        table.add_row(_label(row), *(f"{row[key]:.1f}" for key in METRICS), row["model"])
    return table


def plot_rounds(rows: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    positions = range(len(rows))
    for key, label in zip(METRICS, ("Solve-P", "Solve-R", "Solve-F1"), strict=False):
        ax.plot(positions, [row[key] for row in rows], marker="o", label=label)
    ax.set_xticks(list(positions), [_label(row) for row in rows])
    ax.set_ylabel("held-out score (x100)")
    ax.legend()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
