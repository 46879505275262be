"""`ftrl demo`: the whole loop on the embedded model, on one CPU, in one resumable command.

A preset of `ftrl loop` (`ftrl.recipes.loop`) plus its environment build and report: builds a procedural training
set and a test set from world domains never trained on, then runs the loop (evaluate the base model, warm-start
it on gold trajectories (SFT), collect trajectory states with the current policy from fresh training environments,
train it with RL on the per-turn verifiable reward, evaluate again) and writes a before/after report. Every step
leaves its output under `out/` and is skipped when that output is complete, so an interrupted demo resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.construction.world import DOMAIN_NAMES
from ftrl.recipes.loop import LoopConfig, round_dir
from ftrl.settings import redefault, setting, setting_table
from ftrl.train.config import SFTConfig, TrainConfig, make_config

#: World domains the demo trains on; the rest are held out for the test set.
HELD_OUT_DOMAINS = ("river", "mountain", "sports_club")


def demo_difficulty() -> Difficulty:
    """Small environments keep prompts short enough for a 135M model on a CPU."""
    return Difficulty(
        min_hops=2,
        max_hops=3,
        min_chain_hops=1,
        max_chain_hops=2,
        min_params=2,
        max_params=3,
        min_tools=2,
        max_tools=3,
        min_distractors=1,
    )


def demo_train(**changes: Any) -> TrainConfig:
    """The demo's RL: the cpu preset, with dynamic sampling (8 states sampled, the 4 whose rewards differ trained
    on), no KL term (no reference pass: a quarter of a step's compute here) and the lowest 10 layers frozen."""
    values = {
        "steps": 5,
        "n": 8,
        "lr": 1e-5,
        "temperature": 1.0,
        "batch_states": 4,
        "mini_batch_states": 4,
        "filter_groups": True,
        "gen_batch_states": 8,
        "kl_coef": 0.0,
        "freeze_layers": 10,
        "max_new_tokens": 96,
        "max_prompt_tokens": 4096,
    }
    return make_config("cpu", **(values | changes))


@dataclass(kw_only=True)
class DemoConfig(LoopConfig):
    """The demo recipe: `ftrl loop`'s config with the demo's defaults (it is a preset of the loop) and the
    environment build in front of it. `quick()` shrinks it to a few minutes for the end-to-end test, `long()` gives
    RL more time."""

    out: str = setting(
        "runs/demo",
        "Output folder (by profile: runs/demo, runs/demo-quick, runs/demo-long; a seed other than 0 adds -seed<N> "
        "unless --out or the config file names the folder).",
        results=False,
    )
    train_envs: int = setting(
        160, "Training environments built (the warm start and every RL round draw from them, never the same twice)."
    )
    test_envs: int = setting(48, "Test environments built, all from the held-out domains.")
    held_out: tuple[str, ...] = setting(
        HELD_OUT_DOMAINS, "World domains kept out of training; the test set uses only these."
    )
    difficulty: Difficulty = setting_table(
        demo_difficulty, "How hard the built environments are (`ftrl build`'s knobs)."
    )
    warm_start_size: int = setting(
        48, "Training environments whose gold trajectories the warm start (SFT) learns from."
    )
    # the loop's fields, at the demo's values
    rounds: int = redefault(LoopConfig, "rounds", 1)
    max_new_tokens: int = redefault(LoopConfig, "max_new_tokens", 96)
    max_turns: int = redefault(LoopConfig, "max_turns", 8)
    batch_size: int = redefault(LoopConfig, "batch_size", 48)  # all 48 test episodes at once: short prompts
    envs_per_round: int = redefault(LoopConfig, "envs_per_round", 24)
    eval_every_round: bool = redefault(LoopConfig, "eval_every_round", False)
    train: TrainConfig = setting_table(demo_train, "RL of each round (`ftrl train`'s config, the demo's values).")
    warm_start: SFTConfig = setting_table(
        lambda: SFTConfig(epochs=1, lr=5e-5, freeze_layers=10),
        "The warm start on gold trajectories (`ftrl sft`'s config; the demo sets its environments).",
    )

    @classmethod
    def long(cls, out: str = "runs/demo-long", model: str = "embedded") -> DemoConfig:
        """Three RL rounds instead of one (the paper's iterations): 34 minutes for seed 0 on a 2-core CPU; it did not
        add a held-out gain there (benchmarks/RESULTS.md, Demo)."""
        return cls(out=out, model=model, rounds=3)

    @classmethod
    def profile(cls, name: str, model: str = "embedded") -> DemoConfig:
        """`default` (the 30-minute recipe), `quick` (a few minutes, tiny sets) or `long` (three RL rounds)."""
        makers = {
            "default": lambda: cls(model=model),
            "quick": lambda: cls.quick(model=model),
            "long": lambda: cls.long(model=model),
        }
        if name not in makers:
            raise ValueError(f"unknown demo profile {name!r}; known: {', '.join(makers)}")
        return makers[name]()

    @classmethod
    def quick(cls, out: str = "runs/demo-quick", model: str = "embedded") -> DemoConfig:
        return cls(
            out=out,
            model=model,
            train_envs=16,
            test_envs=8,
            warm_start_size=12,
            envs_per_round=2,
            rounds=2,
            max_new_tokens=64,
            train=demo_train(
                steps=1,
                n=4,
                batch_states=2,
                mini_batch_states=2,
                gen_batch_states=4,
                freeze_layers=1,
                max_new_tokens=64,
            ),
            warm_start=SFTConfig(epochs=1, lr=5e-5, freeze_layers=1),
        )


#: Fields of `DemoConfig` that the demo sets itself (its built environments): no flags.
DEMO_SETS = ("envs", "eval_envs", "warm_start.envs")


class Demo:
    """The demo: its environment build, then `ftrl loop` with the demo's settings, then its report."""

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

    def loop_config(self) -> LoopConfig:
        """The loop the demo runs: its own loop fields, the warm start on the first `warm_start_size` training
        environments and the rounds on the rest (`envs_per_round` each), evaluated on the test set."""
        c = self.config
        loop = {item.name: getattr(c, item.name) for item in fields(LoopConfig)}
        return LoopConfig(
            **loop
            | {
                "envs": str(self.out / "envs" / "rl.jsonl"),
                "eval_envs": str(self.test_file),
                "warm_start": replace(c.warm_start, envs=str(self.out / "envs" / "sft.jsonl")),
            }
        )

    def run(self) -> dict[str, Any]:
        from ftrl.recipes.loop import run_loop

        self.console.rule("[bold]build environments")
        started = time.perf_counter()
        self.build()
        self.timings["build environments"] = round(time.perf_counter() - started, 1)
        rows = run_loop(self.loop_config(), console=self.console, build=self.train_build)
        self.timings |= {row["label"]: row["seconds"] for row in rows if "seconds" in row}
        self.console.rule("[bold]report")
        return self.report()

    def build(self) -> None:
        """The training and test sets, then the warm start's share of the training set and the rounds' rest."""
        from ftrl.construction.driver import build_environments
        from ftrl.env import read_envs, write_envs

        held_out = tuple(self.config.held_out)
        unknown = [name for name in held_out if name not in DOMAIN_NAMES]
        if unknown:
            raise ValueError(f"unknown held-out domains {unknown}; known: {', '.join(DOMAIN_NAMES)}")
        seed, difficulty = self.config.seed, self.config.difficulty
        train = self.train_build
        test = BuildConfig(
            n=self.config.test_envs, split="test", domains=held_out, seed=seed + 1, difficulty=difficulty
        )
        for config, path in ((train, self.train_file), (test, self.test_file)):
            report = build_environments(config, path)
            self.console.print(f"{path}: {report.written + report.resumed} environments ({report.rejected} rejected)")
        envs = read_envs(self.train_file)
        write_envs(self.out / "envs" / "sft.jsonl", envs[: self.config.warm_start_size])
        write_envs(self.out / "envs" / "rl.jsonl", envs[self.config.warm_start_size :])

    @property
    def train_build(self) -> BuildConfig:
        """How the training environments are built (and, with the curriculum, each round's, at moved knobs)."""
        c = self.config
        return BuildConfig(
            n=c.train_envs, split="train", exclude_domains=tuple(c.held_out), seed=c.seed, difficulty=c.difficulty
        )

    def evaluation_dirs(self) -> dict[str, Path]:
        """Where the loop evaluated the three stages the report compares."""
        return {
            "base": round_dir(self.out, 0) / "eval",
            "sft": self.out / "warm_start" / "eval",
            "rl": round_dir(self.out, self.config.rounds) / "eval",
        }

    def report(self) -> dict[str, Any]:
        from ftrl.eval.compare import plot
        from ftrl.eval.paired import DIFFERENCE_LEGEND, difference_rows, pairwise
        from ftrl.eval.summary import to_rich

        folders = self.evaluation_dirs()
        loop = self.loop_config()
        models = {"base": loop.model, "sft": self.out / "warm_start" / "model"}
        models["rl"] = round_dir(self.out, self.config.rounds) / "train" / "model"
        summaries = {
            label: json.loads((folder / "summary.json").read_text())
            if (folder / "summary.json").exists()  # else every episode is done: this rereads them
            else loop.evaluation(str(models[label]), loop.eval_envs, folder, self.console)
            for label, folder in folders.items()
        }
        rows = before_after_rows(summaries)
        differences = pairwise({label: str(folder) for label, folder in folders.items()}, seed=self.config.seed)
        folder = self.out / "report"
        folder.mkdir(parents=True, exist_ok=True)
        plot(summaries, folder / "report.png", differences)
        import torch

        # the thread count decides the fp32 sums, so a rerun reproduces scores only with the same one
        settings = {"config": asdict(self.config), "seconds": self.timings, "torch_threads": torch.get_num_threads()}
        (folder / "settings.json").write_text(json.dumps(settings, indent=2, default=list))
        (folder / "differences.json").write_text(json.dumps([d.to_dict() for d in differences], indent=2))
        (folder / "report.md").write_text(
            report_markdown(rows, difference_rows(differences), settings), encoding="utf-8"
        )
        self.console.print(to_rich(rows, "held-out Solve-F1 (x100): base -> warm start -> RL", BEFORE_AFTER_LEGEND))
        self.console.print(
            to_rich(difference_rows(differences), "paired differences of mean Solve-F1 (x100)", DIFFERENCE_LEGEND)
        )
        self.console.print(f"report: {folder / 'report.md'} and {folder / 'report.png'}")
        return summaries


#: What `before_after_rows`' short headers mean.
BEFORE_AFTER_LEGEND = (
    "columns: Solve-F1 of each stage; chg = last stage - first; P, R, acc = the last stage's Solve-P, Solve-R "
    "and answer accuracy; n/a = no tool call, so no precision"
)


def before_after_rows(summaries: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Header (short: `BEFORE_AFTER_LEGEND`) plus one row per scenario and the mean: Solve-F1 of each run, the
    change from the first, and the last run's Solve-P, Solve-R and accuracy."""
    from ftrl.eval.summary import NA, shown

    labels = list(summaries)
    first = summaries[labels[0]]
    rows = [["scenario", *labels, "chg", "P", "R", "acc"]]
    for scenario in [*first["scenarios"], "mean"]:
        stats = [s["mean"] if scenario == "mean" else s["scenarios"].get(scenario, {}) for s in summaries.values()]
        f1 = [stat.get("solve_f1", 0.0) for stat in stats]
        last = [shown(stats[-1], key) for key in ("solve_p", "solve_r", "accuracy")]
        rows.append(
            [
                scenario,
                *(f"{value:.1f}" for value in f1),
                f"{f1[-1] - f1[0]:+.1f}",
                *(NA if value is None else f"{value:.1f}" for value in last),
            ]
        )
    return rows


def report_markdown(rows: list[list[str]], differences: list[list[str]], settings: dict[str, Any]) -> str:
    from ftrl.eval.summary import to_markdown

    lines = [
        "# ftrl demo: held-out Solve-F1 before and after training",
        "",
        "Test environments come from world domains never seen in training. Scores are x100 (Solve-F1 = 2q/(p+n)).",
        "",
        to_markdown(rows, legend=BEFORE_AFTER_LEGEND),
        "## Paired differences",
        "",
        "Per-environment change of Solve-F1 between two stages, averaged like the headline (mean over scenarios);",
        "the interval is a 95% percentile bootstrap that resamples environments within each scenario (10,000",
        "resamples, seed = the demo's seed). An interval above 0 means the later stage is better beyond this",
        "test set's noise.",
        "",
        to_markdown(differences),
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
