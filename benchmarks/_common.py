"""Helpers shared by the benchmark scripts (not a benchmark: `run_all.py` runs `bench_*.py` only)."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

MODEL_HELP = "embedded, a model folder, or 'tiny' (random, quick)"
RESULTS = Path(__file__).with_name("RESULTS.md")


def bench_model(name: str) -> str:
    """The model to load: `tiny` builds a small random model in a temporary folder; anything else is kept."""
    if name != "tiny":
        return name
    from ftrl.train.tiny import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", hidden=64))


def demo_step_args(doc: str, extra: list[tuple[str, type, object]] = ()) -> argparse.Namespace:
    """`--model`, `--data` (the demo's warm-started model and first RL round's states by default) and `--threads`
    for the RL-step benchmarks, plus `extra` (name, type, default) options; exits when the files are missing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/sft/model")
    parser.add_argument("--data", default="runs/demo/rl/round_1/states.jsonl")
    parser.add_argument("--threads", type=int, default=1)
    for name, kind, default in extra:
        parser.add_argument(name, type=kind, default=default)
    args = parser.parse_args()
    missing = [path for path in (args.data, f"{args.model}/config.json") if not os.path.exists(path)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `ftrl demo` first, or pass --model and --data")
    return args


def write_results_section(heading: str, section: str) -> None:
    """Put `section` (starting with its `heading` line) into RESULTS.md in place of the old `heading` section, up
    to the next `## ` heading, or append it; every other section stays as it is."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = section.rstrip("\n") + "\n"
    match = pattern.search(current)
    if match:
        separator = "\n" if match.end() < len(current) else ""
        updated = current[: match.start()] + body + separator + current[match.end() :]
    else:
        updated = current.rstrip("\n") + "\n\n" + body
    RESULTS.write_text(updated, encoding="utf-8")
