"""llama.cpp Q8_0 (`benchmarks/llamacpp_engine.py`) against kvgen fp32, same model, same process, one after the
other (so on an idle machine both get the same cores; run it idle):

- fidelity: greedy 48-token continuations of 4 test prompts, identical or not (Q8_0 and exact F32 GGUF);
- prefill: the 8 prompts of one RL step, real tool-use prompts, tokens/s (`max_new_tokens=1`);
- decode: one step of 48 rows, each over its own context of 128 and of 1024 tokens, ms per step;
- one RL step's sampling: 8 states x 8 responses, temperature 1.0, 96 new tokens, wall seconds;
- weight sync: writing the GGUF and reloading it, seconds.

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=ON ..." \\
        pip install llama-cpp-python==0.3.36   # what was measured (`make install-serve` builds without VNNI)
    python benchmarks/bench_llamacpp.py [--model M] [--envs E] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/warm_start/model")
    parser.add_argument("--envs", default="runs/demo/envs/test.jsonl")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("skipped: llama-cpp-python is not installed (`make install-serve`)")
        return
    import torch

    torch.set_num_threads(args.threads)
    import llamacpp_engine as lc
    from ftrl.env import read_envs
    from ftrl.rollout import kvgen
    from ftrl.rollout.load import PolicySpec, load_policy
    from ftrl.settings import SamplingConfig
    from ftrl.train.actor import end_of_turn_ids

    envs = read_envs(args.envs)
    policy = load_policy(PolicySpec(model=args.model), envs)
    model, tokenizer = policy.model, policy.tokenizer  # type: ignore[attr-defined]
    prompts = [policy._tokens(env.messages, env.tools) for env in envs[:8]]  # type: ignore[attr-defined]
    stop = set(end_of_turn_ids(model, tokenizer))
    print(f"{args.model}; threads {args.threads}; load average at start {os.getloadavg()[0]:.2f}")
    print(f"RL-step prompts: {[len(p) for p in prompts]} tokens")
    started = time.perf_counter()
    engine = lc.LlamaCppEngine(model, tokenizer, threads=args.threads, slots=72, slot_tokens=2048)
    print(f"llama.cpp engine made (GGUF written and loaded) in {time.perf_counter() - started:.1f} s")
    rows: list[tuple[str, str, str]] = []

    greedy = SamplingConfig(temperature=0, max_new_tokens=48)
    reference = kvgen.generate_batch(model, prompts[:4], stop, greedy, max_rows=16)
    for weight_type in ("q8_0", "f32"):
        exact = lc.LlamaCppEngine(model, tokenizer, weight_type=weight_type, threads=args.threads, slots=8)
        outputs = lc.generate_batch(exact, prompts[:4], stop, greedy, max_rows=16)
        same = sum(a == b for a, b in zip(reference, outputs, strict=True))
        rows.append((f"greedy 48-token continuations identical ({weight_type})", "-", f"{same} of 4"))
        exact.close()

    one = SamplingConfig(temperature=0, max_new_tokens=1)
    tokens = sum(len(p) for p in prompts)
    started = time.perf_counter()
    kvgen.generate_batch(model, prompts, stop, one, max_rows=8)
    kv = tokens / (time.perf_counter() - started)
    started = time.perf_counter()
    lc.generate_batch(engine, prompts, stop, one, max_rows=8, keep=False)
    cpp = tokens / (time.perf_counter() - started)
    rows.append(("prefill, 8 RL-step prompts, tokens/s", f"{kv:.0f}", f"{cpp:.0f} ({cpp / kv:.2f}x)"))

    for context in (128, 1024):
        random.seed(0)
        contexts = [[random.randrange(1000, 40000) for _ in range(context)] for _ in range(48)]
        decoder = kvgen.Decoder(model, set(), SamplingConfig(temperature=0, max_new_tokens=12), max_rows=48)
        for index, prompt in enumerate(contexts):
            decoder.submit(index, prompt)
        while decoder.pending:
            decoder.step()
        decoder.step()
        started = time.perf_counter()
        for _ in range(5):
            decoder.step()
        kv = (time.perf_counter() - started) / 5 * 1000
        engine.keep(set())
        slots = []
        for index, prompt in enumerate(contexts):
            slot, _ = engine.take(index, prompt)  # type: ignore[misc]
            engine.forward([(slot, prompt)])
            slots.append(slot)
        started = time.perf_counter()
        for _ in range(5):
            engine.forward([(slot, [100]) for slot in slots])
        cpp = (time.perf_counter() - started) / 5 * 1000
        for slot in slots:
            engine.finish(slot, keep=False)
        rows.append(
            (f"decode step, 48 rows over {context} tokens each, ms", f"{kv:.0f}", f"{cpp:.0f} ({kv / cpp:.2f}x)")
        )

    sampling = SamplingConfig(temperature=1.0, max_new_tokens=96)
    group = [p for p in prompts for _ in range(8)]
    torch.manual_seed(0)
    started = time.perf_counter()
    out = kvgen.generate_batch(model, group, stop, sampling, max_rows=64)
    kv, kv_tokens = time.perf_counter() - started, sum(map(len, out))
    torch.manual_seed(0)
    started = time.perf_counter()
    out = lc.generate_batch(engine, group, stop, sampling, max_rows=64, keep=False)
    cpp, cpp_tokens = time.perf_counter() - started, sum(map(len, out))
    rows.append(
        (
            "RL step sampling, 8 x 8, 96 new tokens, s (new tokens)",
            f"{kv:.1f} ({kv_tokens})",
            f"{cpp:.1f} ({cpp_tokens}; {kv / cpp:.2f}x)",
        )
    )
    started = time.perf_counter()
    engine.sync(model)
    rows.append(("weight sync (write the Q8_0 GGUF, reload), s", "-", f"{time.perf_counter() - started:.2f}"))
    engine.close()

    print("| measure | kvgen fp32 | llama.cpp Q8_0 |")
    print("|---|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
