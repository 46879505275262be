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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.construction.world import DOMAIN_NAMES
from ftrl.recipes.curriculum import CurriculumConfig
from ftrl.recipes.loop import LoopConfig, round_dir
from ftrl.train.config import SFTConfig, make_config

#: World domains the demo trains on; the rest are held out for the test set.
HELD_OUT_DOMAINS = ("river", "mountain", "sports_club")
#: Turns per episode when collecting and evaluating.
DEMO_MAX_TURNS = 8


@dataclass(kw_only=True)
class DemoConfig:
    """The demo recipe; `quick()` shrinks it to a few minutes for the end-to-end test, `long()` gives RL more time.
    The `#:` comments are the help of `ftrl demo`'s flags."""

    #: Output folder (by profile: runs/demo, runs/demo-quick, runs/demo-long; a seed other than 0 adds -seed<N>
    #: unless --out or the config file names the folder).
    out: str = "runs/demo"
    #: Model to train: `embedded` or a local HF model folder.
    model: str = "embedded"
    #: Seed of everything (environments, data order, sampling); use a fresh --out.
    seed: int = 0
    #: Training environments built (SFT and every RL round draw from them, never the same ones twice).
    train_envs: int = 160
    #: Test environments built, all from the held-out domains.
    test_envs: int = 48
    #: World domains kept out of training; the test set uses only these.
    held_out: tuple[str, ...] = HELD_OUT_DOMAINS
    #: Small environments keep prompts short enough for a 135M model on a CPU.
    difficulty: Difficulty = field(
        default_factory=lambda: Difficulty(
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
    )
    #: Training environments whose gold trajectories the warm start (SFT) learns from.
    sft_envs: int = 48
    #: Warm-start passes over the gold trajectories.
    sft_epochs: int = 1
    #: Warm-start learning rate.
    sft_lr: float = 5e-5
    #: Warm start: keep the embeddings and the lowest K decoder layers frozen.
    sft_freeze_layers: int = 10
    #: RL rounds, as the paper's iterations: each collects states with the current policy from --rl-states-envs
    #: training environments not used before (none of them in SFT), then trains --rl-steps.
    rl_rounds: int = 1
    #: Training environments each RL round collects states from.
    rl_states_envs: int = 24
    #: Sampling temperature when collecting states.
    rl_collect_temperature: float = 1.0
    #: Optimizer steps per RL round.
    rl_steps: int = 5
    #: grpo | reinforce_plus_plus | reinforce_plus_plus_baseline.
    rl_algo: str = "grpo"
    #: Responses sampled per state.
    rl_n: int = 8
    #: States trained on per step; with --rl-gen-states above it, dynamic sampling: that many states are sampled
    #: and the update uses those whose responses scored differently (equal rewards give GRPO nothing).
    rl_batch_states: int = 4
    #: States sampled per step (dynamic sampling when above --rl-batch-states).
    rl_gen_states: int = 8
    #: Dynamic sampling picks first the states where some response earned a positive reward.
    rl_prefer_solved: bool = False
    #: RL learning rate.
    rl_lr: float = 1e-5
    #: Sampling temperature of the responses trained on.
    rl_temperature: float = 1.0
    #: Weight of the KL loss; 0: no reference model and no reference pass (a quarter of a step's compute here).
    rl_kl_coef: float = 0.0
    #: RL: keep the embeddings and the lowest K decoder layers frozen.
    rl_freeze_layers: int = 10
    #: Tokens per assistant turn (evaluation, collection and training).
    max_new_tokens: int = 96
    #: States with longer prompts are skipped in training.
    max_prompt_tokens: int = 4096
    #: Episodes decoded together; all 48 test episodes at once (short prompts keep their caches small).
    eval_batch: int = 48
    #: Environments built for the learner each RL round instead of --rl-states-envs fixed ones (issue 23).
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    #: Trackers for the SFT and RL metrics: tensorboard, wandb, mlflow, trackio (comma-separated; optional extras).
    report_to: str = ""
    #: Generation engine of the evaluations and the states' collection: kvgen (fp32), int8 (faster on a CPU, a
    #: slightly different model), hf or auto; RL sampling uses int8 when this is int8, else kvgen.
    engine: str = "auto"

    @property
    def train_engine(self) -> str:
        """The trainer's sampling engine for `engine` (the trainer has kvgen and int8 only)."""
        return "int8" if self.engine == "int8" else "kvgen"

    @classmethod
    def long(cls, out: str = "runs/demo-long", model: str = "embedded") -> DemoConfig:
        """Three RL rounds instead of one (the paper's iterations): 34 minutes for seed 0 on a 2-core CPU; it did not
        add a held-out gain there (benchmarks/RESULTS.md, Demo)."""
        return cls(out=out, model=model, rl_rounds=3)

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
            sft_envs=12,
            sft_epochs=1,
            rl_states_envs=2,
            rl_rounds=2,
            rl_steps=1,
            rl_n=4,
            rl_batch_states=2,
            rl_gen_states=4,
            rl_freeze_layers=1,
            max_new_tokens=64,
            sft_freeze_layers=1,
        )


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
        """The loop the demo runs: SFT on the first `sft_envs` training environments, then `rl_rounds` rounds, each
        collecting from the next `rl_states_envs` of them; evaluated on the test set before, after the warm start
        and after the last round."""
        c = self.config
        train = make_config(
            "cpu",
            algo=c.rl_algo,
            steps=c.rl_steps,
            n=c.rl_n,
            lr=c.rl_lr,
            temperature=c.rl_temperature,
            batch_states=c.rl_batch_states,
            mini_batch_states=c.rl_batch_states,
            filter_groups=c.rl_gen_states > c.rl_batch_states,
            gen_batch_states=c.rl_gen_states,
            prefer_solved=c.rl_prefer_solved,
            kl_coef=c.rl_kl_coef,
            freeze_layers=c.rl_freeze_layers,
            max_new_tokens=c.max_new_tokens,
            max_prompt_tokens=c.max_prompt_tokens,
            report_to=c.report_to,
            engine=c.train_engine,
        )
        warm_start = SFTConfig(
            envs=str(self.out / "envs" / "sft.jsonl"),
            epochs=c.sft_epochs,
            lr=c.sft_lr,
            freeze_layers=c.sft_freeze_layers,
            report_to=c.report_to,
        )
        return LoopConfig(
            model=c.model,
            envs=str(self.out / "envs" / "rl.jsonl"),
            eval_envs=str(self.test_file),
            out=str(self.out),
            rounds=c.rl_rounds,
            seed=c.seed,
            max_new_tokens=c.max_new_tokens,
            max_turns=DEMO_MAX_TURNS,
            collect_temperature=c.rl_collect_temperature,
            batch_size=c.eval_batch,
            envs_per_round=c.rl_states_envs,
            eval_every_round=False,
            train=train,
            warm_start=warm_start,
            curriculum=c.curriculum,
            engine=c.engine,
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
        write_envs(self.out / "envs" / "sft.jsonl", envs[: self.config.sft_envs])
        write_envs(self.out / "envs" / "rl.jsonl", envs[self.config.sft_envs :])

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
            "rl": round_dir(self.out, self.config.rl_rounds) / "eval",
        }

    def report(self) -> dict[str, Any]:
        from ftrl.eval.compare import plot
        from ftrl.eval.paired import DIFFERENCE_LEGEND, difference_rows, pairwise
        from ftrl.eval.summary import to_rich

        folders = self.evaluation_dirs()
        loop = self.loop_config()
        models = {"base": loop.model, "sft": self.out / "warm_start" / "model"}
        models["rl"] = round_dir(self.out, self.config.rl_rounds) / "train" / "model"
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
        settings = {"config": asdict(self.config), "seconds": self.timings}
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
