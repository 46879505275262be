"""Tool runtime vs the reference approach on "replay every gold action of the tau-bench sample tasks".

Reference (baseline): in-process, per call `exec(code)` into a fresh namespace inside a new thread joined with a
10 s timeout (what its func_timeout decorator does); the DB is a dict deep-copied per task.
Ours: ToolRuntime episodes with `state_key=domain` (the DB is shipped to each worker once, cloned per episode in
the worker), sequential `Episode.call`, and one `call_batch` over all tasks (parallel over workers).

Loading JSON files is excluded from all timings; the per-task state clone is included in all of them (for ours it
happens lazily inside each episode's first call). One untimed warm-up pass precedes the timed passes of each.

    python benchmarks/bench_runtime.py [--data ../shared/data/tau-bench] [--repeat N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import write_results_section
from ftrl.runtime import RuntimeConfig, ToolRuntime, error_message, format_result

DOMAIN_FILES = {"airline": ("flights", "reservations", "users"), "retail": ("orders", "products", "users")}
SECTION = "## Tool runtime"


def load(data: Path) -> tuple[dict, dict, list[tuple[str, list[tuple[str, str]]]]]:
    codes, dbs = {}, {}
    for domain, stems in DOMAIN_FILES.items():
        codes[domain] = json.loads((data / domain / "codes.json").read_text())
        dbs[domain] = {stem: json.loads((data / domain / f"{stem}.json").read_text()) for stem in stems}
    tasks = []
    for line in (data / "tasks_sample.jsonl").read_text().splitlines():
        if line.strip():
            task = json.loads(line)
            calls = [(a["function"]["name"], a["function"]["arguments"]) for a in task["actions"]]
            tasks.append((task["data_source"].split("/")[1], calls))
    return codes, dbs, tasks


def reference_call(codes: dict[str, str], name: str, arguments: str, db: dict) -> str:
    """One call the reference way: a fresh thread running exec + call, joined with a 10 s timeout."""
    box: list[str] = []

    def target() -> None:
        try:
            tool_args = json.loads(arguments)
            namespace: dict[str, Any] = {}
            exec(codes[name], namespace, namespace)
            if name not in namespace:
                raise NameError(f"name {name} is not defined")
            box.append(format_result(namespace[name](**tool_args, data=db)))
        except Exception as error:
            box.append(error_message(name, str(error)))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    return box[0] if box else error_message(name, f"Function {name} timed out after 10.000000 seconds.")


def run_reference(codes, dbs, tasks) -> tuple[list[str], list[float]]:
    outputs, latencies = [], []
    for domain, calls in tasks:
        db = copy.deepcopy(dbs[domain])
        for name, arguments in calls:
            start = time.perf_counter()
            outputs.append(reference_call(codes[domain], name, arguments, db))
            latencies.append(time.perf_counter() - start)
    return outputs, latencies


def run_sequential(runtime: ToolRuntime, codes, dbs, tasks) -> tuple[list[str], list[float]]:
    outputs, latencies = [], []
    for domain, calls in tasks:
        with runtime.episode(codes[domain], dbs[domain], state_key=domain) as episode:
            for name, arguments in calls:
                start = time.perf_counter()
                outputs.append(episode.call(name, arguments))
                latencies.append(time.perf_counter() - start)
    return outputs, latencies


def run_batched(runtime: ToolRuntime, codes, dbs, tasks) -> list[str]:
    episodes = [runtime.episode(codes[domain], dbs[domain], state_key=domain) for domain, _ in tasks]
    requests = [
        (episode, name, args) for episode, (_, calls) in zip(episodes, tasks, strict=False) for name, args in calls
    ]
    outputs = runtime.call_batch(requests)
    for episode in episodes:
        episode.close()
    return outputs


def timed(function, repeat: int) -> tuple[float, list[str], list[float]]:
    function()  # warm-up
    total, latencies, outputs = 0.0, [], []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        total += time.perf_counter() - start
        outputs, lat = result if isinstance(result, tuple) else (result, [])
        latencies += lat
    return total, outputs, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/tau-bench"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    codes, dbs, tasks = load(args.data)
    calls = sum(len(c) for _, c in tasks) * args.repeat

    ref_time, ref_out, ref_lat = timed(lambda: run_reference(codes, dbs, tasks), args.repeat)
    with ToolRuntime(RuntimeConfig()) as runtime:
        seq_time, seq_out, seq_lat = timed(lambda: run_sequential(runtime, codes, dbs, tasks), args.repeat)
        bat_time, bat_out, _ = timed(lambda: run_batched(runtime, codes, dbs, tasks), args.repeat)
        layers, workers = runtime.layers, runtime.config.workers or os.cpu_count()
    assert seq_out == ref_out and bat_out == ref_out, "runtime outputs differ from the reference"

    rows = [
        ("reference: in-process exec + thread per call", ref_time, ref_lat),
        ("ToolRuntime, sequential Episode.call", seq_time, seq_lat),
        (f"ToolRuntime, one call_batch over all tasks ({workers} workers)", bat_time, []),
    ]
    lines = [
        "| approach | calls/s | vs reference | p50 ms/call | p95 ms/call |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, total, lat in rows:
        p50 = f"{percentile(lat, 50) * 1e3:.3f}" if lat else "-"
        p95 = f"{percentile(lat, 95) * 1e3:.3f}" if lat else "-"
        lines.append(f"| {label} | {calls / total:,.0f} | {ref_time / total:.1f}x | {p50} | {p95} |")
    table = "\n".join(lines)
    command = f"python benchmarks/bench_runtime.py --repeat {args.repeat}"
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    section = f"""{SECTION}

Workload: replay every gold action of the {len(tasks)} tau-bench sample tasks ({calls // args.repeat} calls) x
{args.repeat} passes after one warm-up pass; outputs of all approaches are checked equal. JSON loading is
excluded; the per-task DB clone is included everywhere (reference: `copy.deepcopy` before the task's first call,
outside the per-call latency; ToolRuntime: marshal clone inside the worker during the episode's first call, so it
is inside that call's latency). Worker isolation layers active: {", ".join(layers)}. Machine: {machine}.

{table}

Throughput includes the per-task state clone on both sides (the reference's `copy.deepcopy` of a multi-MB
database is a large share of its time). Per call, without cloning, the median latency ratio is
{percentile(ref_lat, 50) / percentile(seq_lat, 50):.1f}x (reference p50 / runtime p50).

Command: `{command}`
"""
    print(section)
    write_results_section(SECTION, section)


if __name__ == "__main__":
    main()
