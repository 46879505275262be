"""Cost of the check that runs before eval/sample/score/train/sft/loop/export: every distinct tool code loaded once
in the isolated runtime (`ftrl.env.validate.check_tool_code`), against the compile-only check it replaced.

Workloads: the shared FTRL sample, the tau-bench domains, and the sample repeated until it has `--scale`
environments, each copy's code made distinct by a comment (every code loads: the worst case for de-duplication).
Each time is the median of `--repeat` runs and includes starting and closing the runtime.

    python benchmarks/bench_code_check.py [--data ../shared/data] [--scale 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _common import write_results_section
from ftrl.env.domains import EnvSource, load_source
from ftrl.env.validate import check_tool_code

SECTION = "## Pre-run tool-code check (issue 17)"


def scaled(source: EnvSource, count: int) -> EnvSource:
    """`count` environments cycling through `source`'s, copy i's codes ending in a comment that names i."""
    envs = []
    for index in range(count):
        env = source.envs[index % len(source.envs)]
        codes = {name: f"{code}\n# copy {index}\n" for name, code in env.codes.items()}
        envs.append(dataclasses.replace(env, codes=codes))
    return EnvSource(source.path, envs, source.domains)


def median_seconds(work, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def compile_only(source: EnvSource) -> None:
    """The check before this one: each distinct code compiled in this process, nothing run."""
    for code in {code for env in source.envs for code in env.codes.values()}:
        compile(code, "<string>", "exec", dont_inherit=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sample = load_source(args.data / "ftrl" / "test_sample.jsonl")
    workloads = [
        ("shared FTRL sample", sample),
        ("tau-bench domains (20 tasks)", load_source(args.data / "tau-bench")),
        (f"sample x {args.scale // len(sample.envs)}, every code distinct", scaled(sample, args.scale)),
    ]
    lines = [
        "| workload | environments | distinct codes | load in the runtime, s | compile only, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, source in workloads:
        distinct = len({code for env in source.envs for code in env.codes.values()})
        check = median_seconds(lambda source=source: check_tool_code(source), args.repeat)
        old = median_seconds(lambda source=source: compile_only(source), args.repeat)
        lines.append(f"| {label} | {len(source.envs)} | {distinct} | {check:.2f} | {old:.3f} |")
        print(lines[-1], flush=True)
    load = os.getloadavg()[0]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    command = f"python benchmarks/bench_code_check.py --scale {args.scale} --repeat {args.repeat}"
    section = f"""{SECTION}

Before `eval`, `sample`, `score`, `train`, `sft`, `loop` and `export verl` start, every distinct tool code is loaded
once in the isolated runtime (a fresh child per environment, all environments in one batch over
min(cores, distinct codes) workers), so code that fails at import is reported instead of scored 0. The time
includes starting and closing that runtime; "compile only" is the in-process check it replaced (syntax only).
Median of {args.repeat} runs. Machine: {machine}; load average {load:.1f} at the end (the CPUs were shared).

{chr(10).join(lines)}

Command: `{command}`
"""
    print(section)
    write_results_section(SECTION, section)


if __name__ == "__main__":
    main()
