"""Issue 25: the strict matcher against the reference matcher on honest trajectories, and the cost of the checks.

1. Scores. Honest trajectories scored with both matchers, per environment, with a paired bootstrap 95% interval of
   strict - reference (the demo's test set: its gold trajectories replayed by the oracle, and any real episodes
   given with --episodes, re-scored turn by turn from their recorded tool outputs; the reference test sample: its
   gold final answers as final turns, since its rows carry no gold calls). Also the per-turn training reward of
   every gold turn (RL's signal) under both.
2. Cost. Matcher calls per second (reference, strict before this issue, strict now) on the tool outputs of the
   oracle's episodes; environments loaded per second (`read_envs`, now with the `validate` checks) and `ftrl
   build` rate, before (--base-src: the `src` folder of the commit before this issue) and now, in one run.

    python benchmarks/bench_safety.py [--episodes runs/demo/eval/sft/episodes.jsonl ...] [--base-src /tmp/base/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ftrl.construction.config import BuildConfig
from ftrl.construction.driver import build_environments
from ftrl.env.io import read_envs
from ftrl.recipes.demo import DemoConfig
from ftrl.reward import EpisodeScore
from ftrl.reward.match import answer_verify, final_answer_verify, get_matcher, strict_verify
from ftrl.reward.turn import turn_reward
from ftrl.rollout.engine import RolloutConfig, run_rollouts
from ftrl.rollout.policy import GoldPolicy
from ftrl.runtime import RuntimeConfig, ToolRuntime

MATCHERS = ("reference", "strict")
SHARED_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ftrl" / "test_sample.jsonl"


def demo_test_set(folder: Path) -> Path:
    """The demo's test set, built with the demo's settings (`DemoConfig`: held-out domains, seed 1, difficulty)."""
    config = DemoConfig()
    path = folder / "demo_test.jsonl"
    build = BuildConfig(
        n=config.test_envs,
        split="test",
        domains=tuple(config.held_out),
        seed=config.seed + 1,
        difficulty=config.difficulty,
    )
    build_environments(build, path)
    return path


def paired(a: list[float], b: list[float], seed: int = 0, resamples: int = 10_000) -> tuple[float, float, float]:
    diffs = np.asarray(b) - np.asarray(a)
    picks = np.random.default_rng(seed).integers(0, len(diffs), size=(resamples, len(diffs)))
    low, high = np.quantile(diffs[picks].mean(axis=1), [0.025, 0.975])
    return float(diffs.mean()), float(low), float(high)


def rescore(messages: list[dict], unsolved_set: dict, answer: str, matcher: str) -> tuple[float, bool, list[float]]:
    """Solve-F1 x100, answer correctness and the per-turn rewards of a recorded episode under `matcher`."""
    score = EpisodeScore.start(unsolved_set, matcher=get_matcher(matcher))
    rewards = []
    solve_rate = 0.0
    n_gold = score.n_gold
    index = 0
    last_text = ""
    while index < len(messages):
        message = messages[index]
        index += 1
        if message.get("role") != "assistant":
            continue
        outputs = []
        while index < len(messages) and messages[index].get("role") == "tool":
            outputs.append(str(messages[index].get("content") or ""))
            index += 1
        calls = message.get("tool_calls") or []
        outputs = outputs[: len(calls)] + [""] * (len(calls) - len(outputs))
        turn = turn_reward(message, outputs, score.remaining, solve_rate, answer or None, matcher=get_matcher(matcher))
        rewards.append(turn.reward)
        score.add_turn(message, outputs)
        solve_rate = score.n_solved / n_gold
        last_text = str(message.get("content") or "")
    correct = bool(answer) and final_answer_verify(last_text, answer, matcher)
    return 100 * score.solve_f1, correct, rewards


def report_pair(label: str, per_matcher: dict[str, list[tuple[float, bool, list[float]]]]) -> list[str]:
    ref, strict = per_matcher["reference"], per_matcher["strict"]
    f1 = [r[0] for r in ref], [s[0] for s in strict]
    acc = [100.0 * r[1] for r in ref], [100.0 * s[1] for s in strict]
    rew = [float(np.mean(r[2])) if r[2] else 0.0 for r in ref], [float(np.mean(s[2])) if s[2] else 0.0 for s in strict]
    lines = []
    for name, (a, b), scale in (("Solve-F1", f1, "x100"), ("answer accuracy", acc, "%"), ("mean turn reward", rew, "")):
        mean, low, high = paired(a, b)
        lines.append(
            f"| {label} | {name} {scale} | {np.mean(a):.2f} | {np.mean(b):.2f} | {mean:+.2f} [{low:+.2f}, {high:+.2f}] "
            f"| {len(a)} |"
        )
    return lines


def oracle_episodes(path: Path) -> list[tuple[list[dict], dict, str, str]]:
    envs = read_envs(path)
    with ToolRuntime(RuntimeConfig(workers=2)) as runtime:
        results = list(
            run_rollouts([(str(i), e) for i, e in enumerate(envs)], GoldPolicy(envs), runtime, RolloutConfig())
        )
    return [(r.messages, r.env.unsolved_set, r.env.answer, r.env.scenario) for r in results]


def recorded_episodes(path: Path, envs_path: Path) -> list[tuple[list[dict], dict, str, str]]:
    envs = read_envs(envs_path)
    episodes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        env = envs[int(row["episode_id"])]
        episodes.append((row["messages"], env.unsolved_set, env.answer, env.scenario))
    return episodes


def score_all(episodes: list[tuple[list[dict], dict, str, str]]) -> dict[str, list[tuple[float, bool, list[float]]]]:
    return {m: [rescore(msgs, unsolved, answer, m) for msgs, unsolved, answer, _ in episodes] for m in MATCHERS}


def reference_final_answers(path: Path) -> list[str]:
    """The reference sample's gold answers said as final turns (bare, and in a sentence), in a state where every
    sub-answer is solved and in the raw state."""
    lines = []
    envs = read_envs(path)
    for template in ("{}", "The answer is {}."):
        scores = {m: [] for m in MATCHERS}
        for env in envs:
            message = {"role": "assistant", "content": template.format(env.answer), "tool_calls": []}
            for m in MATCHERS:
                solved = {tool: [] for tool in env.unsolved_set}
                r_raw = turn_reward(message, [], env.unsolved_set, 0.0, env.answer, matcher=get_matcher(m)).reward
                r_done = turn_reward(message, [], solved, 1.0, env.answer, matcher=get_matcher(m)).reward
                scores[m].append((r_raw, r_done))
        for index, state in enumerate(("raw state", "all solved")):
            a = [s[index] for s in scores["reference"]]
            b = [s[index] for s in scores["strict"]]
            mean, low, high = paired(a, b)
            lines.append(
                f"| reference sample, gold final answer `{template}`, {state} | turn reward | {np.mean(a):.3f} | "
                f"{np.mean(b):.3f} | {mean:+.3f} [{low:+.3f}, {high:+.3f}] | {len(a)} |"
            )
    return lines


def matcher_rate(cases: list[tuple[str, str, dict]], matcher, seconds: float = 2.0) -> float:
    calls, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for output, gold, arguments in cases:
            matcher(output, gold, arguments)
        calls += len(cases)
    return calls / (time.perf_counter() - began)


def old_strict(base_src: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("old_match", base_src / "ftrl" / "reward" / "match.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.strict_verify


def timed_subprocess(src: Path, code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


LOAD_CODE = """
import time
from ftrl.env.io import read_envs
began = time.perf_counter(); n = 0
while time.perf_counter() - began < 3:
    n += len(read_envs({path!r}))
print(n / (time.perf_counter() - began))
"""
BUILD_CODE = """
import tempfile, time
from pathlib import Path
from ftrl.construction.config import BuildConfig
from ftrl.construction.driver import build_environments
out = Path(tempfile.mkdtemp()) / "envs.jsonl"
began = time.perf_counter()
report = build_environments(BuildConfig(n={n}, seed=3), out)
print(report.written / (time.perf_counter() - began))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", nargs="*", default=[], help="episodes.jsonl of real evaluations on the demo set")
    parser.add_argument("--envs", default=None, help="The demo test set those episodes ran on (default: built).")
    parser.add_argument("--reference", default=str(SHARED_SAMPLE))
    parser.add_argument("--base-src", default=None, help="src/ of the commit before issue 25, for 'before' costs")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating before/now repetitions of the costs.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-safety-"))
    demo = Path(args.envs) if args.envs else demo_test_set(work)
    print("| trajectories | metric | reference | strict | strict - reference [95% paired bootstrap] | n |")
    print("|---|---|---:|---:|---|---:|")
    episodes = oracle_episodes(demo)
    for line in report_pair("demo test set, oracle (gold calls + gold answer)", score_all(episodes)):
        print(line)
    for path in args.episodes:
        for line in report_pair(f"demo test set, `{path}`", score_all(recorded_episodes(Path(path), demo))):
            print(line)
    if Path(args.reference).exists():
        for line in reference_final_answers(Path(args.reference)):
            print(line)
    # cost: matcher calls/s over the oracle's real tool outputs and golds
    cases = []
    for messages, unsolved, _, _ in episodes:
        golds = [gold for answers in unsolved.values() for gold in answers]
        for message in messages:
            if message.get("role") == "tool":
                cases.extend((str(message["content"]), gold, {"q": "x"}) for gold in golds)
    print(f"\nmatcher calls/s over {len(cases)} (tool output, gold) pairs of the oracle's episodes:")
    rates = {"reference": answer_verify, "strict (now)": strict_verify}
    if args.base_src:
        rates["strict (before)"] = old_strict(Path(args.base_src))
    for name, matcher in rates.items():
        print(f"  {name}: {matcher_rate(cases, matcher):,.0f}")
    if args.base_src:
        big = work / "load.jsonl"
        build_environments(BuildConfig(n=1000, seed=5), big)
        here = Path(__file__).resolve().parents[1] / "src"
        loads: dict[str, list[float]] = {"before": [], "now": []}
        builds: dict[str, list[float]] = {"before": [], "now": []}
        for _ in range(args.rounds):
            for label, src in (("before", Path(args.base_src)), ("now", here)):
                loads[label].append(timed_subprocess(src, LOAD_CODE.format(path=str(big))))
                builds[label].append(timed_subprocess(src, BUILD_CODE.format(n=300)))
        for name, values in (("environments loaded/s (1000-row file)", loads), ("`build` environments/s", builds)):
            before, now = np.median(values["before"]), np.median(values["now"])
            print(
                f"{name}: before {before:,.0f}, now {now:,.0f} (now/before {now / before:.2f}; medians of "
                f"{args.rounds} alternating runs)"
            )


if __name__ == "__main__":
    main()
