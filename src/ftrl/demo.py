"""`ftrl demo`: the whole loop on the embedded model, on one CPU, in one resumable command.

Builds a procedural training set and a test set from world domains never trained on, evaluates the base model,
warm-starts it on gold trajectories (SFT), collects trajectory states with the warm-started policy, trains it
with RL on the per-turn verifiable reward, evaluates again, and writes a before/after report. Every step leaves
its output under `out/` and is skipped when that output is complete, so an interrupted demo resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ftrl.build.config import BuildConfig, Difficulty
from ftrl.build.world import DOMAIN_NAMES

#: World domains the demo trains on; the rest are held out for the test set.
HELD_OUT_DOMAINS = ("river", "mountain", "sports_club")


@dataclass
class DemoConfig:
    """The demo recipe; `quick()` shrinks it to a few minutes for the end-to-end test."""

    out: str = "runs/demo"
    model: str = "embedded"
    seed: int = 0
    train_envs: int = 160
    test_envs: int = 48
    held_out: tuple[str, ...] = HELD_OUT_DOMAINS
    #: Small environments keep prompts short enough for a 135M model on a CPU.
    difficulty: Difficulty = field(
        default_factory=lambda: Difficulty(
            min_hops=2, max_hops=3, min_chain_hops=1, max_chain_hops=2, min_params=2, max_params=3,
            min_tools=2, max_tools=3, min_distractors=1,
        )
    )  # fmt: skip
    sft_envs: int = 96
    sft_epochs: int = 1
    sft_lr: float = 5e-5
    sft_freeze_layers: int = 10
    rl_states_envs: int = 8
    rl_steps: int = 4
    rl_algo: str = "grpo"
    rl_n: int = 8
    #: The gentlest recipe measured; bolder ones (lr 1e-5, temperature 1.0, dynamic sampling) lost held-out
    #: Solve-F1 in 4 steps (benchmarks/RESULTS.md "Demo").
    rl_lr: float = 5e-6
    rl_temperature: float = 0.7
    #: > 0: dynamic sampling, draw this many states per step and train on those whose responses score differently.
    rl_gen_states: int = 0
    max_new_tokens: int = 96
    max_prompt_tokens: int = 4096
    #: Episodes decoded together; all 48 test episodes at once (short prompts keep their caches small).
    eval_batch: int = 48

    @classmethod
    def quick(cls, out: str = "runs/demo-quick", model: str = "embedded") -> DemoConfig:
        return cls(out=out, model=model, train_envs=16, test_envs=8, sft_envs=12, sft_epochs=1, rl_states_envs=2,
                   rl_steps=1, rl_n=4, max_new_tokens=64, sft_freeze_layers=1)  # fmt: skip


class Demo:
    """Runs the demo's steps in order; each step checks whether its output already exists."""

    def __init__(self, config: DemoConfig, console: Console | None = None):
        self.config = config
        self.console = console or Console(stderr=True)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "demo_config.json").write_text(json.dumps(asdict(self.config), indent=2, default=list))
        self.timings: dict[str, float] = {}

    @property
    def train_file(self) -> Path:
        return self.out / "envs" / "train.jsonl"

    @property
    def test_file(self) -> Path:
        return self.out / "envs" / "test.jsonl"

    def run(self) -> dict[str, Any]:
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("build environments", self.build),
            ("evaluate base model", lambda: self.evaluate(self.config.model, "base")),
            ("warm start (SFT on gold trajectories)", self.warm_start),
            ("evaluate warm-started model", lambda: self.evaluate(self.sft_model, "sft")),
            ("collect trajectory states", self.collect),
            ("RL training", self.rl),
            ("evaluate RL-trained model", lambda: self.evaluate(self.rl_model, "rl")),
        ]
        for number, (title, step) in enumerate(steps, start=1):
            self.console.rule(f"[bold]{number}/{len(steps) + 1} {title}")
            started = time.perf_counter()
            step()
            self.timings[title] = round(time.perf_counter() - started, 1)
        self.console.rule(f"[bold]{len(steps) + 1}/{len(steps) + 1} report")
        return self.report()

    def build(self) -> None:
        from ftrl.build.driver import build_environments

        held_out = tuple(self.config.held_out)
        unknown = [name for name in held_out if name not in DOMAIN_NAMES]
        if unknown:
            raise ValueError(f"unknown held-out domains {unknown}; known: {', '.join(DOMAIN_NAMES)}")
        common = {"seed": self.config.seed, "difficulty": self.config.difficulty}
        train = BuildConfig(n=self.config.train_envs, split="train", exclude_domains=held_out, **common)
        test = BuildConfig(n=self.config.test_envs, split="test", domains=held_out, **{**common, "seed": self.config.seed + 1})
        for config, path in ((train, self.train_file), (test, self.test_file)):
            report = build_environments(config, path)
            self.console.print(f"{path}: {report.written + report.resumed} environments ({report.rejected} rejected)")

    def evaluate(self, model: str | Path, label: str) -> dict[str, Any]:
        from ftrl.eval.run import evaluate
        from ftrl.rollout.policy import PolicySpec

        spec = PolicySpec(str(model), max_new_tokens=self.config.max_new_tokens, batch_size=self.config.eval_batch)
        return evaluate(spec, self.test_file, self.out / "eval" / label, max_turns=8, console=self.console)

    @property
    def sft_model(self) -> Path:
        return self.out / "sft" / "model"

    @property
    def rl_model(self) -> Path:
        return self.out / "rl" / "model"

    @property
    def states_file(self) -> Path:
        return self.out / "states.jsonl"

    def warm_start(self) -> None:
        from ftrl.env import read_envs, write_envs
        from ftrl.train.sft import SFTConfig, sft

        if (self.sft_model / "config.json").exists():
            return
        subset = self.out / "envs" / "sft.jsonl"
        write_envs(subset, read_envs(self.train_file)[: self.config.sft_envs])
        sft(SFTConfig(model=self.config.model, envs=str(subset), out=str(self.sft_model.parent),
                      epochs=self.config.sft_epochs, lr=self.config.sft_lr,
                      freeze_layers=self.config.sft_freeze_layers), console=self.console)  # fmt: skip

    def collect(self) -> None:
        from ftrl.env import read_envs, write_envs
        from ftrl.rollout.collect import collect
        from ftrl.rollout.policy import PolicySpec

        subset = self.out / "envs" / "rl.jsonl"
        train = read_envs(self.train_file)
        write_envs(subset, train[self.config.sft_envs : self.config.sft_envs + self.config.rl_states_envs])
        spec = PolicySpec(str(self.sft_model), temperature=1.0, max_new_tokens=self.config.max_new_tokens)
        collect(spec, subset, self.states_file, max_turns=8, console=self.console)

    def rl(self) -> None:
        from ftrl.train.config import make_config
        from ftrl.train.trainer import train

        if (self.rl_model / "config.json").exists():
            return
        config = make_config(
            "cpu", model=str(self.sft_model), data=str(self.states_file), out=str(self.rl_model.parent),
            algo=self.config.rl_algo, steps=self.config.rl_steps, n=self.config.rl_n, lr=self.config.rl_lr,
            temperature=self.config.rl_temperature, filter_groups=self.config.rl_gen_states > 0,
            gen_batch_states=self.config.rl_gen_states, max_new_tokens=self.config.max_new_tokens,
            max_prompt_tokens=self.config.max_prompt_tokens,
            seed=self.config.seed,
        )  # fmt: skip
        train(config, console=self.console)

    def report(self) -> dict[str, Any]:
        from ftrl.eval.report import plot

        labels = ("base", "sft", "rl")
        summaries = {label: json.loads((self.out / "eval" / label / "summary.json").read_text()) for label in labels}
        rows = before_after_rows(summaries)
        folder = self.out / "report"
        folder.mkdir(parents=True, exist_ok=True)
        plot(summaries, folder / "report.png")
        settings = {"config": asdict(self.config), "seconds": self.timings}
        (folder / "settings.json").write_text(json.dumps(settings, indent=2, default=list))
        (folder / "report.md").write_text(report_markdown(rows, settings), encoding="utf-8")
        table = Table(*rows[0], title="held-out Solve-F1 (x100): base -> warm start -> RL")
        for row in rows[1:]:
            table.add_row(*row)
        self.console.print(table)
        self.console.print(f"report: {folder / 'report.md'} and {folder / 'report.png'}")
        return summaries


def before_after_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Header plus one row per scenario and the mean: Solve-F1 of each run and the change from the first."""
    labels = list(summaries)
    first = summaries[labels[0]]
    header = ["scenario", *(f"{label} F1" for label in labels), "change", f"{labels[-1]} P / R", f"{labels[-1]} acc"]
    rows = [header]
    for scenario in [*first["scenarios"], "mean"]:
        stats = [s["mean"] if scenario == "mean" else s["scenarios"].get(scenario, {}) for s in summaries.values()]
        f1 = [stat.get("solve_f1", 0.0) for stat in stats]
        last = stats[-1]
        rows.append([
            scenario, *(f"{value:.1f}" for value in f1), f"{f1[-1] - f1[0]:+.1f}",
            f"{last.get('solve_p', 0.0):.1f} / {last.get('solve_r', 0.0):.1f}", f"{last.get('accuracy', 0.0):.1f}",
        ])  # fmt: skip
    return rows


def report_markdown(rows: list[list[str]], settings: dict[str, Any]) -> str:
    lines = [
        "# ftrl demo: held-out Solve-F1 before and after training",
        "",
        "Test environments come from world domains never seen in training. Scores are x100 (Solve-F1 = 2q/(p+n)).",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(row) + " |" for row in rows[1:]),
        "",
        "![before and after](report.png)",
        "",
        "## Settings and time per step (seconds)",
        "",
        "```json",
        json.dumps(settings, indent=2, default=list),
        "```",
        "",
    ]
    return "\n".join(lines)


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) the demo and return the three evaluation summaries."""
    return Demo(config, console).run()
