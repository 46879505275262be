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

from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.construction.world import DOMAIN_NAMES

#: World domains the demo trains on; the rest are held out for the test set.
HELD_OUT_DOMAINS = ("river", "mountain", "sports_club")


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
    #: grpo | reinforce_pp | reinforce_pp_baseline.
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
            *(
                (f"RL round {k}: collect states, train", lambda k=k: self.rl_round(k))
                for k in range(1, self.config.rl_rounds + 1)
            ),
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
        from ftrl.construction.driver import build_environments

        held_out = tuple(self.config.held_out)
        unknown = [name for name in held_out if name not in DOMAIN_NAMES]
        if unknown:
            raise ValueError(f"unknown held-out domains {unknown}; known: {', '.join(DOMAIN_NAMES)}")
        seed, difficulty = self.config.seed, self.config.difficulty
        train = BuildConfig(
            n=self.config.train_envs, split="train", exclude_domains=held_out, seed=seed, difficulty=difficulty
        )
        test = BuildConfig(
            n=self.config.test_envs, split="test", domains=held_out, seed=seed + 1, difficulty=difficulty
        )
        for config, path in ((train, self.train_file), (test, self.test_file)):
            report = build_environments(config, path)
            self.console.print(f"{path}: {report.written + report.resumed} environments ({report.rejected} rejected)")

    def evaluate(self, model: str | Path, label: str) -> dict[str, Any]:
        from ftrl.eval.run import evaluate
        from ftrl.rollout.load import PolicySpec
        from ftrl.settings import SamplingConfig

        spec = PolicySpec(
            model=str(model),
            sampling=SamplingConfig(max_new_tokens=self.config.max_new_tokens),
            batch_size=self.config.eval_batch,
            engine=self.config.engine,
        )
        return evaluate(spec, self.test_file, self.out / "eval" / label, max_turns=8, console=self.console)

    @property
    def sft_model(self) -> Path:
        return self.out / "sft" / "model"

    @property
    def rl_model(self) -> Path:
        return self.round_dir(self.config.rl_rounds) / "model"

    def round_dir(self, k: int) -> Path:
        return self.out / "rl" / f"round_{k}"

    def warm_start(self) -> None:
        from ftrl.env import read_envs, write_envs
        from ftrl.train.sft import SFTConfig, sft

        if (self.sft_model / "config.json").exists():
            return
        subset = self.out / "envs" / "sft.jsonl"
        write_envs(subset, read_envs(self.train_file)[: self.config.sft_envs])
        sft(
            SFTConfig(
                model=self.config.model,
                envs=str(subset),
                out=str(self.sft_model.parent),
                epochs=self.config.sft_epochs,
                lr=self.config.sft_lr,
                freeze_layers=self.config.sft_freeze_layers,
            ),
            console=self.console,
        )

    def rl_round(self, k: int) -> None:
        """Collect states with the current policy on fresh training environments, then train on them."""
        from ftrl.env import read_envs, write_envs
        from ftrl.rollout.collect import collect
        from ftrl.rollout.load import PolicySpec
        from ftrl.settings import SamplingConfig
        from ftrl.train.config import make_config
        from ftrl.train.trainer import train

        folder, config = self.round_dir(k), self.config
        if (folder / "model" / "config.json").exists():
            return
        policy = self.sft_model if k == 1 else self.round_dir(k - 1) / "model"
        first = config.sft_envs + (k - 1) * config.rl_states_envs
        envs = read_envs(self.train_file)[first : first + config.rl_states_envs]
        if not envs:
            raise ValueError(f"round {k} needs training environments {first}..; raise train_envs")
        folder.mkdir(parents=True, exist_ok=True)
        write_envs(folder / "envs.jsonl", envs)
        sampling = SamplingConfig(
            temperature=config.rl_collect_temperature, max_new_tokens=config.max_new_tokens, seed=config.seed + k
        )
        spec = PolicySpec(model=str(policy), sampling=sampling, batch_size=config.eval_batch, engine=config.engine)
        collect(spec, folder / "envs.jsonl", folder / "states.jsonl", max_turns=8, console=self.console)
        train_config = make_config(
            "cpu",
            model=str(policy),
            data=str(folder / "states.jsonl"),
            out=str(folder),
            algo=config.rl_algo,
            steps=config.rl_steps,
            n=config.rl_n,
            lr=config.rl_lr,
            temperature=config.rl_temperature,
            batch_states=config.rl_batch_states,
            mini_batch_states=config.rl_batch_states,
            filter_groups=config.rl_gen_states > config.rl_batch_states,
            gen_batch_states=config.rl_gen_states,
            prefer_solved=config.rl_prefer_solved,
            kl_coef=config.rl_kl_coef,
            freeze_layers=config.rl_freeze_layers,
            max_new_tokens=config.max_new_tokens,
            max_prompt_tokens=config.max_prompt_tokens,
            seed=config.seed + k,
            engine=config.train_engine,
        )
        train(train_config, console=self.console)

    def report(self) -> dict[str, Any]:
        from ftrl.eval.paired import difference_rows, pairwise
        from ftrl.eval.report import plot
        from ftrl.eval.summary import to_rich

        labels = ("base", "sft", "rl")
        summaries = {label: json.loads((self.out / "eval" / label / "summary.json").read_text()) for label in labels}
        rows = before_after_rows(summaries)
        differences = pairwise({label: self.out / "eval" / label for label in labels}, seed=self.config.seed)
        folder = self.out / "report"
        folder.mkdir(parents=True, exist_ok=True)
        plot(summaries, folder / "report.png")
        settings = {"config": asdict(self.config), "seconds": self.timings}
        (folder / "settings.json").write_text(json.dumps(settings, indent=2, default=list))
        (folder / "differences.json").write_text(json.dumps([d.to_dict() for d in differences], indent=2))
        (folder / "report.md").write_text(
            report_markdown(rows, difference_rows(differences), settings), encoding="utf-8"
        )
        table = Table(*rows[0], title="held-out Solve-F1 (x100): base -> warm start -> RL")
        for row in rows[1:]:
            table.add_row(*row)
        self.console.print(table)
        self.console.print(to_rich(difference_rows(differences), "paired differences of mean Solve-F1 (x100)"))
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
        rows.append(
            [
                scenario,
                *(f"{value:.1f}" for value in f1),
                f"{f1[-1] - f1[0]:+.1f}",
                f"{last.get('solve_p', 0.0):.1f} / {last.get('solve_r', 0.0):.1f}",
                f"{last.get('accuracy', 0.0):.1f}",
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
        to_markdown(rows),
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
