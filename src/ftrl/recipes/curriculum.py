"""A closed-loop curriculum: environments built for the learner (issue 23).

Each round, before training:
1. build candidate environments per scenario at that scenario's difficulty level (procedural backend; a file of
   environments from elsewhere, the LLM backend's included, is used as it is);
2. collect states from them with the current policy (as every round does);
3. probe every state with the current policy: `probe_n` sampled responses scored by the training reward; its
   pass rate is the share that earned a positive reward (what GRPO needs: a success beside a failure);
4. keep the states whose pass rate is inside the target band and train on those;
5. move each scenario's level one step toward the band (`next_level`).

The pass rate is written as `pass_rate` (with `probe_n`) on each row. The reference format's `solve_rate` field is
something else, the share of a state's sub-answers already produced, which the reward reads; the probe leaves it
alone. The probe and the filter work on any environment rows (`probe_file`), which is what `ftrl build
--probe-model` runs after building.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftrl.construction.config import BuildConfig, Difficulty
from ftrl.env import Environment
from ftrl.settings import setting

if TYPE_CHECKING:
    from ftrl.train.config import TrainConfig

#: `(states) -> pass rate of each state in [0, 1]`.
PassRates = Callable[[list[Environment]], list[float]]

#: Histogram bins of the pass rates a round reports.
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(kw_only=True)
class CurriculumConfig:
    """Learner-in-the-loop environments; each field's help is its flag's help."""

    curriculum: bool = setting(
        False,
        "Probe each round's states with the current policy and train only on those whose pass rate is inside "
        "--target-solve-rate; with procedural --envs, also build each round's environments at per-scenario "
        "difficulty levels moved toward that band.",
    )
    target_solve_rate: str = setting(
        "0.2:0.8", "Target band of a state's pass rate (share of sampled responses with a positive reward), LOW:HIGH."
    )
    probe_n: int = setting(4, "Responses the probe samples per state.")
    envs_per_scenario: int = setting(
        6, "Environments built per scenario and round (0: no building; states come from --envs as without curriculum)."
    )
    min_level: int = setting(
        -2, "Easiest difficulty level (0 is the environments' own difficulty; each level moves every size knob by one)."
    )
    max_level: int = setting(3, "Hardest difficulty level.")

    def __post_init__(self) -> None:
        parse_band(self.target_solve_rate)
        if self.probe_n < 2:
            raise ValueError("probe_n must be at least 2 (one response cannot show a success beside a failure)")
        if not self.min_level <= 0 <= self.max_level:
            raise ValueError(f"need min_level <= 0 <= max_level, got {self.min_level} and {self.max_level}")

    @property
    def band(self) -> tuple[float, float]:
        return parse_band(self.target_solve_rate)


def parse_band(text: str) -> tuple[float, float]:
    """`"0.2:0.8"` -> (0.2, 0.8); both in [0, 1], low <= high."""
    try:
        low, high = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"target solve rate {text!r}: expected LOW:HIGH, e.g. 0.2:0.8") from None
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"target solve rate {text!r}: need 0 <= LOW <= HIGH <= 1")
    return low, high


# ---- difficulty knobs and the controller ----------------------------------------------------------------------

#: The size knobs a level moves besides tools and distractors, as (low, high) field pairs of `Difficulty`: chain
#: length, parallel chain length and parameters per tool (more to fill: a missing required parameter). Tools and
#: distractors (more tools to choose from: the wrong tool for the property) move in `difficulty_at`.
LEVEL_KNOBS = (("min_hops", "max_hops"), ("min_chain_hops", "max_chain_hops"), ("min_params", "max_params"))


def difficulty_at(base: Difficulty, level: int) -> Difficulty:
    """`base` moved `level` steps: every size knob (hops, chain hops, parameters, tools) by one per step, and one
    more distractor tool per harder step; never below 1 (hops 2, a chain needs two)."""
    changes: dict[str, int] = {}
    for low, high in LEVEL_KNOBS:
        floor = 2 if low == "min_hops" else 1
        changes[low] = max(floor, getattr(base, low) + level)
        changes[high] = max(changes[low], getattr(base, high) + level)
    distractors = max(0, base.min_distractors + max(level, 0))
    changes["min_distractors"] = distractors
    changes["min_tools"] = max(1, base.min_tools + level)
    changes["max_tools"] = max(changes["min_tools"], base.max_tools + level + max(level, 0))
    return replace(base, **changes)


def knobs(difficulty: Difficulty) -> dict[str, str]:
    """The knobs a round reports, as `low-high` ranges."""
    pairs = (*LEVEL_KNOBS, ("min_tools", "max_tools"))
    shown = {low.removeprefix("min_"): f"{getattr(difficulty, low)}-{getattr(difficulty, high)}" for low, high in pairs}
    return shown | {"distractors": str(difficulty.min_distractors)}


def next_level(level: int, pass_rate: float, band: tuple[float, float], lowest: int, highest: int) -> int:
    """One step toward the band: harder when the scenario's mean pass rate is above it, easier when below."""
    low, high = band
    if pass_rate > high:
        level += 1
    elif pass_rate < low:
        level -= 1
    return min(highest, max(lowest, level))


def scenario_of(env: Environment) -> str:
    return env.scenario or "unknown"


def mean_by_scenario(states: Sequence[Environment], rates: Sequence[float]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for env, rate in zip(states, rates, strict=True):
        totals.setdefault(scenario_of(env), []).append(rate)
    return {scenario: sum(values) / len(values) for scenario, values in sorted(totals.items())}


def histogram(rates: Sequence[float]) -> dict[str, int]:
    """Counts of pass rates per bin `[a, b)` of `BINS` (the last bin includes 1.0)."""
    edges = list(zip(BINS, BINS[1:], strict=False))
    counts = dict.fromkeys((f"{a:.1f}-{b:.1f}" for a, b in edges), 0)
    for rate in rates:
        a, b = next((a, b) for a, b in edges if rate < b or b == BINS[-1])
        counts[f"{a:.1f}-{b:.1f}"] += 1
    return counts


def in_band(rate: float, band: tuple[float, float]) -> bool:
    return band[0] <= rate <= band[1]


# ---- building ----------------------------------------------------------------------------------------------


def build_round(
    base: BuildConfig, levels: dict[str, int], envs_per_scenario: int, seed: int, folder: Path
) -> list[Environment]:
    """Each scenario's environments at its level, built into `folder/<scenario>.jsonl` (resumable builds)."""
    from ftrl.construction.driver import build_environments
    from ftrl.env import read_envs

    folder.mkdir(parents=True, exist_ok=True)
    envs: list[Environment] = []
    for number, scenario in enumerate(base.scenarios):
        config = replace(
            base,
            n=envs_per_scenario,
            scenarios=(scenario,),
            seed=seed * 1000 + number,
            difficulty=difficulty_at(base.difficulty, levels.get(scenario, 0)),
        )
        path = folder / f"{scenario}.jsonl"
        build_environments(config, path)
        envs += read_envs(path)
    return envs


def build_base(envs: str | Path) -> BuildConfig | None:
    """The procedural build settings recorded beside an environment file (`ftrl build`'s `.build.json`), or None
    when the file was not built procedurally (the curriculum then only probes and filters)."""
    import json

    identity = Path(f"{envs}.build.json")
    if not identity.exists():
        return None
    stored = json.loads(identity.read_text(encoding="utf-8"))
    if stored.get("backend") != "procedural":
        return None
    fields = {"scenarios", "seed", "split", "domains", "exclude_domains"}
    values: dict[str, Any] = {key: stored[key] for key in fields if key in stored}
    values["scenarios"] = tuple(values.get("scenarios") or ())
    values["exclude_domains"] = tuple(values.get("exclude_domains") or ())
    if values.get("domains") is not None:
        values["domains"] = tuple(values["domains"])
    return BuildConfig(**values, difficulty=Difficulty(**stored["difficulty"]))


# ---- probing -----------------------------------------------------------------------------------------------


def policy_pass_rates(model: str, train: TrainConfig, n: int, chunk_states: int = 8) -> PassRates:
    """The probe of a local model: `n` responses per state sampled as training samples them (`train`'s
    temperature, tokens and reward), scored by the training reward; a state's pass rate is the share of its
    responses with a positive reward."""

    def rates(states: list[Environment]) -> list[float]:
        import torch

        from ftrl.formats.render import template_supports_tools
        from ftrl.models import resolve_model
        from ftrl.train.actor import load_trainable_model, sample
        from ftrl.train.trainer import render_prompt, runtime_scorer

        if not states:
            return []
        torch.manual_seed(train.seed)
        policy, tokenizer = load_trainable_model(
            resolve_model(model), device=train.placement.device, dtype=train.placement.dtype
        )
        native = template_supports_tools(tokenizer)
        prompts = [
            tokenizer(render_prompt(tokenizer, env, native), add_special_tokens=False).input_ids for env in states
        ]
        runtime, bind = runtime_scorer(train)
        result: list[float] = []
        with runtime as running, torch.no_grad():
            score = bind(running)
            for start in range(0, len(states), chunk_states):
                chunk = range(start, min(len(states), start + chunk_states))
                batch = sample(policy, tokenizer, [prompts[i] for i in chunk], n=n, sampling=train.sampling)
                rewards = [score(states[chunk[row // n]], text)[0] for row, text in enumerate(batch.texts)]
                result += [sum(r > 0 for r in rewards[k * n : (k + 1) * n]) / n for k in range(len(chunk))]
        return result

    return rates


@dataclass
class ProbeResult:
    """States with their pass rates, the ones kept, and what a round reports."""

    states: list[Environment]
    rates: list[float]
    kept: list[Environment]
    band: tuple[float, float]

    def report(self) -> dict[str, Any]:
        return {
            "probed": len(self.states),
            "kept": len(self.kept),
            "pass_rate_mean": round(sum(self.rates) / len(self.rates), 3) if self.rates else None,
            "histogram": histogram(self.rates),
            "pass_rate_by_scenario": {k: round(v, 3) for k, v in mean_by_scenario(self.states, self.rates).items()},
        }


def probe_and_filter(
    states: list[Environment], pass_rates: PassRates, band: tuple[float, float], n: int
) -> ProbeResult:
    """Probe `states`, write `pass_rate`/`probe_n` into each, keep those inside `band`."""
    rates = pass_rates(states)
    if len(rates) != len(states):
        raise ValueError(f"the probe returned {len(rates)} pass rates for {len(states)} states")
    marked = [
        replace(env, extra={**env.extra, "pass_rate": rate, "probe_n": n})
        for env, rate in zip(states, rates, strict=True)
    ]
    kept = [env for env, rate in zip(marked, rates, strict=True) if in_band(rate, band)]
    return ProbeResult(marked, rates, kept, band)


def probe_file(
    source: str | Path, out: str | Path, pass_rates: PassRates, band: tuple[float, float], n: int
) -> ProbeResult:
    """Probe every row of `source` (environments or states, from any backend) and write the ones in `band` to
    `out`, each with its `pass_rate`; all rows with theirs go to `out.probe.jsonl`."""
    from ftrl.env import read_envs, write_envs

    result = probe_and_filter(read_envs(source), pass_rates, band, n)
    write_envs(Path(f"{out}.probe.jsonl"), result.states)
    write_envs(out, result.kept)
    return result
