"""What a new environment costs the tool runtime: one call each in fresh environments, sequentially and in batches.

Reports the worker's CPU time per environment (the fork server plus the children it reaped, from /proc: steadier than
wall time on a shared machine) and the wall time. Prints only (RESULTS.md's isolation sections are written by
hand): to compare two versions, run it with each one's `src` on PYTHONPATH, alternately, in one session.

    python benchmarks/bench_new_env.py [--n 300] [--batch 64] [--batches 5]
"""

from __future__ import annotations

import argparse
import os
import time

from ftrl.runtime import RuntimeConfig, ToolRuntime

CODE = "import json\nFACTS = json.loads('{\"a\": 1}')\ndef f(x):\n    return [x + i for i in range(100)]\n"


def worker_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of `pid`, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="environments called one after another")
    parser.add_argument("--batch", type=int, default=64, help="environments per call_batch")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    with ToolRuntime(RuntimeConfig(workers=1)) as runtime:
        print(f"layers: {', '.join(runtime.layers)}")
        pid = runtime._slots[0].process.pid  # type: ignore[union-attr]
        for i in range(20):  # warm-up
            runtime.episode({"f": f"{CODE}#{i}"}).call("f", {"x": 1})
        print("| mode | worker CPU ms per env | wall ms per env |\n|---|---:|---:|")
        cpu, wall = worker_cpu_s(pid), time.perf_counter()
        for i in range(args.n):
            runtime.episode({"f": f"{CODE}#s{i}"}).call("f", {"x": i})
        cpu, wall = worker_cpu_s(pid) - cpu, time.perf_counter() - wall
        print(f"| sequential, {args.n} envs | {1000 * cpu / args.n:.2f} | {1000 * wall / args.n:.2f} |")
        total = args.batch * args.batches
        cpu, wall = worker_cpu_s(pid), time.perf_counter()
        for b in range(args.batches):
            runtime.call_batch([(runtime.episode({"f": f"{CODE}#b{b}-{i}"}), "f", {"x": i}) for i in range(args.batch)])
        cpu, wall = worker_cpu_s(pid) - cpu, time.perf_counter() - wall
        print(f"| {args.batches} batches of {args.batch} envs | {1000 * cpu / total:.2f} | {1000 * wall / total:.2f} |")


if __name__ == "__main__":
    main()
