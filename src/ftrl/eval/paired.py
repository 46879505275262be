"""Paired comparison of two evaluations over the same environments: mean difference and a bootstrap interval.

Two models evaluated on the same 48 environments share most of their noise (the same hard and easy items), so
the honest question is "how much does the per-environment score change", not whether two independent means
differ. The headline Solve-F1 is the mean over scenarios of each scenario's mean, so the difference is computed
the same way and the bootstrap resamples environments within each scenario (stratified), keeping the scenario
weights fixed. The seed is fixed: the same two runs always give the same interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftrl.eval.summary import EPISODES_FILE, scenario_of
from ftrl.jsonl import iter_jsonl

METRIC_KEYS = {"solve_f1": "solve_f1", "solve_p": "solve_precision", "solve_r": "solve_rate"}


@dataclass(frozen=True)
class PairedDifference:
    """`b - a` on the headline scale (x100): the point estimate and its percentile bootstrap interval."""

    a: str
    b: str
    metric: str
    mean: float
    low: float
    high: float
    n: int
    resamples: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("a", "b", "metric", "mean", "low", "high", "n", "resamples", "seed")}


def episode_scores(folder: str | Path, metric: str = "solve_f1") -> dict[str, tuple[str, float]]:
    """`episode_id -> (scenario, score x100)` from an evaluation folder's `episodes.jsonl`."""
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRIC_KEYS)}")
    path = Path(folder) / EPISODES_FILE
    if not path.is_file():
        raise ValueError(f"{path}: not found (an `ftrl eval` output folder has one)")
    scores = {}
    for line, row in iter_jsonl(path, allow_torn_tail=True):
        try:
            scores[str(row["episode_id"])] = (scenario_of(row), 100.0 * float(row["metrics"][METRIC_KEYS[metric]]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{line}: field {error}: not an evaluation episode row") from None
    return scores


def paired_difference(
    a: str | Path,
    b: str | Path,
    *,
    metric: str = "solve_f1",
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    labels: tuple[str, str] | None = None,
) -> PairedDifference:
    """Mean over scenarios of the per-environment difference `b - a`, with a stratified paired bootstrap interval.

    Both folders must hold the same episodes (the same environment file evaluated twice); a mismatch is an error,
    since pairing different items would make the interval meaningless.
    """
    scores_a, scores_b = episode_scores(a, metric), episode_scores(b, metric)
    if scores_a.keys() != scores_b.keys():
        only_a, only_b = sorted(scores_a.keys() - scores_b.keys()), sorted(scores_b.keys() - scores_a.keys())
        raise ValueError(
            f"{a} and {b} are not over the same environments (only in the first: {only_a[:5]}, "
            f"only in the second: {only_b[:5]})"
        )
    if not scores_a:
        raise ValueError(f"{a}: no episodes")
    by_scenario: dict[str, list[float]] = {}
    for episode, (scenario, score) in scores_a.items():
        by_scenario.setdefault(scenario, []).append(scores_b[episode][1] - score)
    rng = np.random.default_rng(seed)
    point = float(np.mean([np.mean(d) for d in by_scenario.values()]))
    draws = np.zeros(resamples)
    for diffs in by_scenario.values():
        values = np.asarray(diffs)
        picks = rng.integers(0, len(values), size=(resamples, len(values)))
        draws += values[picks].mean(axis=1)
    draws /= len(by_scenario)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    name_a, name_b = labels or (Path(a).name, Path(b).name)
    return PairedDifference(name_a, name_b, metric, point, float(low), float(high), len(scores_a), resamples, seed)


def pooled_difference(
    pairs: Mapping[str, tuple[str | Path, str | Path]],
    *,
    metric: str = "solve_f1",
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
    labels: tuple[str, str] = ("a", "b"),
) -> tuple[list[PairedDifference], PairedDifference]:
    """Several seeds' `b - a` (each a pair of evaluation folders over that seed's environments) pooled: the mean of
    the seeds' headline differences, with a bootstrap that resamples environments within each seed and scenario.
    Returns each seed's own difference and the pooled one (its `n` counts environments over all seeds)."""
    if not pairs:
        raise ValueError("no runs to pool")
    per_seed = [
        paired_difference(
            a,
            b,
            metric=metric,
            resamples=resamples,
            seed=seed,
            level=level,
            labels=(f"{name}: {labels[0]}", f"{name}: {labels[1]}"),
        )
        for name, (a, b) in pairs.items()
    ]
    rng = np.random.default_rng(seed)
    point, draws = 0.0, np.zeros(resamples)
    for a, b in pairs.values():
        scores_a, scores_b = episode_scores(a, metric), episode_scores(b, metric)
        by_scenario: dict[str, list[float]] = {}
        for episode, (scenario, score) in scores_a.items():
            by_scenario.setdefault(scenario, []).append(scores_b[episode][1] - score)
        point += float(np.mean([np.mean(d) for d in by_scenario.values()])) / len(pairs)
        for diffs in by_scenario.values():
            values = np.asarray(diffs)
            picks = rng.integers(0, len(values), size=(resamples, len(values)))
            draws += values[picks].mean(axis=1) / (len(by_scenario) * len(pairs))
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    n = sum(d.n for d in per_seed)
    pooled = PairedDifference(
        f"pooled: {labels[0]}", f"pooled: {labels[1]}", metric, point, float(low), float(high), n, resamples, seed
    )
    return per_seed, pooled


def pairwise(folders: dict[str, str | Path], metric: str = "solve_f1", seed: int = 0) -> list[PairedDifference]:
    """Every ordered pair (earlier, later) of the runs, in the order given."""
    names = list(folders)
    return [
        paired_difference(folders[x], folders[y], metric=metric, seed=seed, labels=(x, y))
        for i, x in enumerate(names)
        for y in names[i + 1 :]
    ]


#: What `difference_rows`' short headers mean.
DIFFERENCE_LEGEND = "diff = mean per-environment difference (x100); 95% CI = paired bootstrap interval; n environments"


def difference_rows(differences: list[PairedDifference]) -> list[list[str]]:
    """Header (`DIFFERENCE_LEGEND`) plus one row per pair: `b - a`, its interval, whether the interval excludes 0."""
    rows = [["comparison", "diff", "95% CI", "n"]]
    for d in differences:
        verdict = "above 0" if d.low > 0 else "below 0" if d.high < 0 else "includes 0"
        rows.append([f"{d.b} - {d.a}", f"{d.mean:+.1f}", f"[{d.low:+.1f}, {d.high:+.1f}] ({verdict})", str(d.n)])
    return rows
