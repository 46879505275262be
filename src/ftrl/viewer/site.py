"""`ftrl view`: write the static run viewer: `OUT/index.html`, its script and style, and `OUT/data/*.js`.

The site opens from disk (file://) without a server or network: the page, script and style are local files, and
data are JavaScript files the page loads with `<script>` tags (a browser refuses `fetch()` of local files). Large
runs stay fast: the episode list of a run is one compact file (a row per episode, for filtering and search), and
the episodes themselves are in pages of `PAGE_SIZE`, each loaded only when one of its episodes is opened; RL
samples are one file per training step.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ftrl.eval.paired import paired_difference
from ftrl.eval.summary import scenario_of
from ftrl.viewer.data import EvalRun, Runs, episode_record, final_answer, load_runs, question

#: Episodes per data page.
PAGE_SIZE = 100
#: The folder a command's output gets its viewer in.
VIEWER_DIR = "viewer"
STATIC = ("index.html", "viewer.js", "viewer.css")
#: Graphs of an RL training's metrics.jsonl: (key, title, key of a spread drawn around it).
RL_CURVES = (
    ("reward_mean", "reward (mean ± std)", "reward_std"),
    ("informative_groups", "groups with spread", None),
    ("solved_groups", "solved_groups", None),
    ("kl", "KL", None),
    ("entropy", "entropy", None),
    ("response_len", "response length (tokens)", None),
    ("tool_call_rate", "tool-call rate", None),
    ("seconds", "step time (s)", None),
)
SFT_CURVES = (("loss", "SFT loss", None), ("seconds", "step time (s)", None))


def _js(path: Path, key: str, value: Any) -> int:
    """Write `FTRL.put(key, value);` (JSON is valid JavaScript); returns the file's size in bytes."""
    text = f"FTRL.put({json.dumps(key)},{json.dumps(value, ensure_ascii=False, separators=(',', ':'))});\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def _number(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _list_row(row: dict[str, Any], page: int) -> list[Any]:
    """The compact row the episode list filters and searches: id, scenario, F1, P (None without calls), R,
    correct, calls, errors, turns, question, final answer, page."""
    metrics = row.get("metrics", {})
    calls = int(row.get("n_calls", 0))
    return [
        str(row["episode_id"]),
        scenario_of(row),
        _number(metrics.get("solve_f1")),
        _number(metrics.get("solve_precision")) if calls else None,
        _number(metrics.get("solve_rate")),
        int(bool(row.get("correct"))),
        calls,
        int(row.get("n_errors", 0)),
        int(row.get("turns", 0)),
        question(row.get("messages", []))[:200],
        final_answer(row.get("messages", []))[:120],
        page,
    ]


def _write_eval(data: Path, key: str, run: EvalRun) -> dict[str, Any]:
    envs = {str(index): env for index, env in enumerate(run.envs or [])}
    listing, sizes = [], []
    for page, start in enumerate(range(0, len(run.episodes), PAGE_SIZE)):
        chunk = run.episodes[start : start + PAGE_SIZE]
        records = [episode_record(row, envs.get(str(row["episode_id"]))) for row in chunk]
        sizes.append(_js(data / key / f"p{page}.js", f"{key}/p{page}", records))
        listing += [_list_row(row, page) for row in chunk]
    list_size = _js(data / key / "list.js", f"{key}/list", listing)
    summary = run.summary
    return {
        "key": key,
        "name": run.name,
        "folder": str(run.folder),
        "model": summary.get("model", ""),
        "envs": summary.get("envs", ""),
        "envs_note": run.envs_note,
        "mean": summary.get("mean", {}),
        "scenarios": summary.get("scenarios", {}),
        "n": len(run.episodes),
        "pages": len(sizes),
        "bytes": {"list": list_size, "largest_page": max(sizes, default=0)},
    }


def _pairs(data: Path, runs: list[EvalRun], keys: list[str]) -> list[dict[str, Any]]:
    """Every pair of evaluations over the same environments: the paired Solve-F1 interval and the per-episode
    change (a diff file, rows sorted by change)."""
    pairs = []
    for i, a in enumerate(runs):
        for j in range(i + 1, len(runs)):
            b = runs[j]
            ids_a = {str(row["episode_id"]): row for row in a.episodes}
            ids_b = {str(row["episode_id"]): row for row in b.episodes}
            if not ids_a or ids_a.keys() != ids_b.keys():
                continue
            n = len(ids_a)
            interval = paired_difference(
                a.folder, b.folder, labels=(a.name, b.name), resamples=10_000 if n <= 2000 else 1000
            ).to_dict()
            rows: list[list[Any]] = []
            for episode, row_a in ids_a.items():
                f1_a = float(row_a["metrics"]["solve_f1"])
                f1_b = float(ids_b[episode]["metrics"]["solve_f1"])
                rows.append(
                    [episode, scenario_of(row_a), round(f1_a, 4), round(f1_b, 4), round(f1_b - f1_a, 4)]
                    + [question(row_a.get("messages", []))[:160]]
                )
            rows.sort(key=lambda r: (-r[4], r[0]))
            key = f"d{i}_{j}"
            _js(data / f"{key}.js", key, rows)
            changed = [r[4] for r in rows]
            pairs.append(
                {
                    "key": key,
                    "a": keys[i],
                    "b": keys[j],
                    "consecutive": j == i + 1,
                    "interval": interval,
                    "improved": sum(d > 0 for d in changed),
                    "regressed": sum(d < 0 for d in changed),
                    "same": sum(d == 0 for d in changed),
                }
            )
    return pairs


def _curves(kind: str, metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    curves = []
    for key, title, spread in RL_CURVES if kind == "rl" else SFT_CURVES:
        if not any(row.get(key) is not None for row in metrics):
            continue
        curves.append(
            {
                "key": key,
                "title": title,
                "steps": [row.get("step") for row in metrics],
                "values": [_number(row.get(key)) for row in metrics],
                "spread": [_number(row.get(spread)) for row in metrics] if spread else None,
            }
        )
    return curves


def build_site(runs: Runs, out: str | Path) -> dict[str, Any]:
    """Write the site for `runs` into `out` (its `data/` is replaced); returns the index written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    keys = [f"e{i}" for i in range(len(runs.evals))]
    evals = [_write_eval(data, key, run) for key, run in zip(keys, runs.evals, strict=True)]
    trainings = []
    for i, training in enumerate(runs.trainings):
        key = f"t{i}"
        steps: dict[int, list[dict[str, Any]]] = {}
        for sample in training.samples:
            steps.setdefault(int(sample["step"]), []).append(sample)
        for step, rows in steps.items():
            _js(data / key / f"s{step}.js", f"{key}/s{step}", rows)
        seconds = sum(float(row.get("seconds") or 0) for row in training.metrics)
        trainings.append(
            {
                "key": key,
                "name": training.name,
                "folder": str(training.folder),
                "kind": training.kind,
                "n_steps": len(training.metrics),
                "seconds": round(seconds, 1),
                "curves": _curves(training.kind, training.metrics),
                "sample_steps": sorted(steps),
            }
        )
    index = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "page_size": PAGE_SIZE,
        "evals": evals,
        "trainings": trainings,
        "pairs": _pairs(data, runs.evals, keys),
        "stage_times": runs.stage_times,
    }
    _js(data / "index.js", "index", index)
    static = resources.files("ftrl.viewer") / "static"
    for name in STATIC:
        (out / name).write_bytes((static / name).read_bytes())
    return index


def write_site(paths: Sequence[str | Path], out: str | Path, envs: str | Path | None = None) -> Path:
    """`ftrl view`: the site of the runs under `paths`, written to `out`; returns its index.html."""
    build_site(load_runs(paths, envs), out)
    return Path(out) / "index.html"
