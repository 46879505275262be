"""Torch CPU threading under contention: which default stays fast when another process shares the CPU?

    python benchmarks/bench_threads.py [--seconds 6]

Each setting runs in a fresh subprocess (OpenMP reads its environment once, at start-up) on the embedded model
(SmolLM2-135M, greedy): one prefill of 2 x 64 tokens then 16 decode steps with the KV cache, repeated for about
`--seconds`; the figure is decode-loop passes per second (higher is better). Every setting is measured twice in the
same run: with nothing added, and with one competing busy process (`python -c 'while True: pass'`, nice 0)
that this script starts and stops. Prints a Markdown table; nothing is written.

Then the case a new user meets (issue 24): a busy spell as long as an install (`--install-seconds`, one busy
process per CPU) ends, and an ftrl command starts at once. It prints the load average then, the threads the old
rule (1-minute load average) and the current one (`/proc/stat` over 0.25 s) pick, and the passes/s of the ftrl
default; and the same choice while one busy process really runs (a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {
    "torch default: 2 threads, OpenMP default wait policy": {"threads": 0, "env": {}},
    "1 thread": {"threads": 1, "env": {}},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"threads": 0, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "ftrl default (`ftrl.threads.configure_threads`)": {"threads": -1, "env": {}},
}

WORKLOAD = """
import json, sys, time
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
if threads == -1:
    from ftrl.threads import configure_threads
    configure_threads()  # what every ftrl command does first, before torch is imported
import torch
if threads > 0:
    torch.set_num_threads(threads)
from ftrl.models import resolve_model
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(resolve_model("embedded"), dtype=torch.float32).eval()
ids = torch.randint(100, 20000, (2, 64))

def once():
    with torch.no_grad():
        out = model(ids, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(16):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)

once()
passes, began = 0, time.perf_counter()
while time.perf_counter() - began < seconds:
    once()
    passes += 1
print(json.dumps({"rate": passes / (time.perf_counter() - began), "threads": torch.get_num_threads()}))
"""


def measure(setting: dict, seconds: float) -> dict:
    inherited = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env = {**inherited, **setting["env"]}
    result = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(setting["threads"]), str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def thread_choice() -> dict:
    """What each rule picks now: the 1-minute load average's and `/proc/stat`'s (the ftrl default)."""
    from ftrl.threads import busy_cpus, default_threads

    load = os.getloadavg()[0]
    busy = busy_cpus()
    return {"load_avg": load, "busy_now": busy, "old": default_threads(load=load), "new": default_threads()}


def after_install(install_seconds: float, seconds: float) -> None:
    cpus = os.cpu_count() or 1
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus)]
    try:
        time.sleep(install_seconds)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    idle = thread_choice()
    idle_rate = measure(SETTINGS["ftrl default (`ftrl.threads.configure_threads`)"], seconds)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        shared = thread_choice()
    finally:
        hog.kill()
        hog.wait()
    print(f"\nRight after a {install_seconds:.0f} s busy spell on all {cpus} CPUs, and with one busy process:\n")
    print("| moment | load avg | CPUs busy now | threads, load-average rule | threads, ftrl now | passes/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, row, rate in (("spell just ended", idle, f"{idle_rate['rate']:.2f}"), ("1 busy process", shared, "")):
        busy = "n/a" if row["busy_now"] is None else f"{row['busy_now']:.2f}"
        print(f"| {label} | {row['load_avg']:.1f} | {busy} | {row['old']} | {row['new']} | {rate} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--install-seconds", type=float, default=60.0)
    parser.add_argument("--only-install", action="store_true", help="Skip the settings table.")
    args = parser.parse_args()
    if args.only_install:
        after_install(args.install_seconds, args.seconds)
        return
    rows = {}
    for label, setting in SETTINGS.items():
        quiet_load = os.getloadavg()[0]
        quiet = measure(setting, args.seconds)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            busy = measure(setting, args.seconds)
        finally:
            hog.kill()
            hog.wait()
        rows[label] = (quiet, busy, quiet_load)
    print(f"Machine: {os.cpu_count()} CPUs; load average before each quiet run in the last column.\n")
    print("| setting | torch threads | passes/s, nothing added | passes/s, + 1 busy process | slowdown | load avg |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, (quiet, busy, load) in rows.items():
        slowdown = quiet["rate"] / busy["rate"] if busy["rate"] else float("inf")
        print(
            f"| {label} | {quiet['threads']} | {quiet['rate']:.2f} | {busy['rate']:.2f} | {slowdown:.1f}x "
            f"| {load:.1f} |"
        )
    after_install(args.install_seconds, args.seconds)


if __name__ == "__main__":
    main()
