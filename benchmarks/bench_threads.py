"""Torch CPU threading under contention: which default stays fast when another process shares the CPU?

    python benchmarks/bench_threads.py [--seconds 6]

Each setting runs in a fresh subprocess (OpenMP reads its environment once, at start-up) on the embedded model
(SmolLM2-135M, greedy): one prefill of 2 x 64 tokens then 16 decode steps with the KV cache, repeated for about
`--seconds`; the figure is decode-loop passes per second (higher is better). Every setting is measured twice in the
same run: with nothing added, and with one competing busy process (`python -c 'while True: pass'`, nice 0)
that this script starts and stops. Prints a Markdown table; nothing is written.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
