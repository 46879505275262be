"""`ftrl loop`: the paper's iterative recipe: collect states with the current policy, train on them, evaluate.

Each round's artefacts live in `DIR/round_<k>/` (`states.jsonl`, `train/`, `eval/`) and `DIR/loop_state.json`
records finished rounds, so a killed loop resumes at the round it was in (and that round's training resumes
from its own checkpoints). Round 0 is the starting model's evaluation.

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
from ftrl.train.trainer import train

#: `(model, environments, states file to write) -> None`.
Collect = Callable[[str, str, Path], None]
#: `(model, environments, output folder) -> {"solve_p", "solve_r", "solve_f1", ...}`.
Evaluate = Callable[[str, str, Path], dict[str, float]]

STATE_FILE = "loop_state.json"
METRICS = ("solve_p", "solve_r", "solve_f1")


@dataclass
class LoopConfig:
    model: str = "embedded"
    envs: str = ""
    eval_envs: str = ""
    out: str = "runs/loop"
    rounds: int = 3
    algo: str = "grpo"
    preset: str = "cpu"
    steps: int | None = None  # training steps per round (default: one pass over the round's states)
    lora: bool = False
    seed: int = 0
    #: Generation budget of collection and evaluation; training uses the preset's (or `max_new_tokens` if set).
    max_new_tokens: int = 512
    max_turns: int = 20
    max_new_tokens_train: int | None = None
    save_every: int | None = None  # training checkpoint interval in steps (default: the preset's)

    def sample_states(self, model: str, envs: str, out: Path) -> None:
        """Collect trajectory states with the current policy (`ftrl sample`: temperature 1.0, one per env)."""
        from ftrl.rollout.collect import collect
        from ftrl.rollout.policy import PolicySpec

        spec = PolicySpec(model, temperature=1.0, max_new_tokens=self.max_new_tokens)
        collect(spec, envs, out, max_turns=self.max_turns)

    def evaluate_model(self, model: str, envs: str, out: Path) -> dict[str, float]:
        """Evaluate greedily (`ftrl eval`); returns the mean Solve-P/R/F1 over scenarios."""
        from ftrl.eval.run import evaluate
        from ftrl.rollout.policy import PolicySpec

        summary = evaluate(PolicySpec(model, max_new_tokens=self.max_new_tokens), envs, out, max_turns=self.max_turns)
        return {key: float(summary["mean"][key]) for key in METRICS}


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(state, indent=2))


def run_loop(
    config: LoopConfig,
    collect: Collect | None = None,
    evaluate: Evaluate | None = None,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the rounds; returns one row per evaluated round, round 0 being the start model."""
    console = console or Console(stderr=True)
    collect = collect or config.sample_states
    evaluate = evaluate or config.evaluate_model
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {"rounds": []}
    if not state["rounds"]:
        scores = evaluate(config.model, config.eval_envs, out / "round_0" / "eval")
        state["rounds"].append({"round": 0, "model": config.model, **scores})
        _save(state_path, state)
    while len(state["rounds"]) <= config.rounds:
        number, current = len(state["rounds"]), state["rounds"][-1]["model"]
        folder = out / f"round_{number}"
        states = folder / "states.jsonl"
        if not states.exists():  # a finished collection is reused when the round is resumed
            with atomic_path(states) as temporary:
                collect(current, config.envs, temporary)
        console.print(f"[bold]round {number}[/]: training on {states}")
        train_config = make_config(
            config.preset, model=current, data=str(states), out=str(folder / "train"), algo=config.algo,
            steps=config.steps, lora=config.lora, seed=config.seed + number, max_new_tokens=config.max_new_tokens_train,
            save_every=config.save_every,
        )
        model = str(train(train_config, console=console))
        scores = evaluate(model, config.eval_envs, folder / "eval")
        state["rounds"].append({"round": number, "model": model, **scores})
        _save(state_path, state)
    console.print(rounds_table(state["rounds"]))
    plot_rounds(state["rounds"], out / "loop.png")
    return state["rounds"]


def rounds_table(rounds: list[dict[str, Any]]) -> Table:
    table = Table("round", "Solve-P", "Solve-R", "Solve-F1", "model", title="ftrl loop")
    for row in rounds:
        table.add_row(str(row["round"]), *(f"{row[key]:.4f}" for key in METRICS), row["model"])
    return table


def plot_rounds(rounds: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for key, label in zip(METRICS, ("Solve-P", "Solve-R", "Solve-F1")):
        ax.plot([row["round"] for row in rounds], [row[key] for row in rounds], marker="o", label=label)
    ax.set_xlabel("round")
    ax.set_xticks([row["round"] for row in rounds])
    ax.legend()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
