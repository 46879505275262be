"""`ftrl export verl` against the real verl 0.9.1, which lives in its own environment (`.venv-verl`, created once
by `make verl-env`, which `make test` runs): verl caps transformers below what ftrl's own environment has.

This side prepares everything with ftrl as users run it (procedural environments, oracle states, exports for
SmolLM2's template and a Qwen2.5-style template with a tools block, `ftrl train`'s prompt token ids, `ftrl score`'s
rewards, gold episodes scored by ftrl's runtime) and writes it to a case file; `tests/verl/check_verl.py` then
runs inside the verl environment and checks each of them with verl's own code. No verl code runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.env import gold_turns, read_envs
from ftrl.formats import get_format
from ftrl.models import resolve_model
from ftrl.reward import EpisodeScore
from ftrl.rollout.policy import GoldPolicy
from ftrl.runtime import RuntimeConfig, ToolRuntime

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = Path(os.environ.get("FTRL_VERL_PYTHON", ROOT / ".venv-verl" / "bin" / "python"))
QWEN_TEMPLATE = ROOT / "tests" / "fixtures" / "qwen25_chat_template.jinja"
JUNK = [
    "",
    "<tool_call>{broken json</tool_call>",
    "I do not know.",
    '<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>',
]


def _verl_missing() -> str | None:
    if not VERL_PYTHON.exists():
        return f"no verl environment at {VERL_PYTHON.parent.parent}: `make verl-env` creates it (`make test` does)"
    probe = subprocess.run([VERL_PYTHON, "-c", "import verl, ftrl"], capture_output=True, text=True)
    if probe.returncode:
        return f"verl or ftrl is not importable in {VERL_PYTHON}: {probe.stderr.strip()[-300:]}"
    return None


pytestmark = pytest.mark.skipif(bool(_verl_missing()), reason=_verl_missing() or "")


def invoke(*args: str) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def tokenizers(folder: Path) -> dict[str, tuple[Path, str]]:
    """SmolLM2's tokenizer (no tool support) and the same vocabulary with a Qwen2.5-style tools template."""
    from transformers import AutoTokenizer

    smollm2 = resolve_model("embedded")
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    tokenizer.chat_template = QWEN_TEMPLATE.read_text()
    qwen = folder / "qwen25-style"
    tokenizer.save_pretrained(qwen)
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return {"smollm2": (smollm2, "llama"), "qwen25-style": (qwen, "qwen2")}


def ids_of(tokenizer, messages: list[dict], tools: list[dict]) -> list[int]:
    """The token ids of ftrl's prompt for a conversation (what `ftrl eval` feeds the model at that turn)."""
    from ftrl.formats.render import render_prompt

    return tokenizer(render_prompt(tokenizer, messages, tools), add_special_tokens=False).input_ids


def expectations(states: Path, export: Path, tokenizer_path: Path, work: Path) -> dict:
    """What ftrl itself says for every exported row: `ftrl train`'s prompt ids, `ftrl score`'s rewards, and for
    every episode start the gold episode's tool outputs and Solve-F1."""
    from transformers import AutoTokenizer

    from ftrl.train.trainer import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    envs = read_envs(states)
    oracle, hermes = GoldPolicy(envs), get_format("hermes")
    gold = [hermes.render(oracle.generate([env.messages], [env.tools])[0]) for env in envs]
    requests = [(row, text) for row in range(len(envs)) for text in [gold[row], *JUNK]]
    responses = work / f"{export.name}-responses.jsonl"
    responses.write_text("".join(json.dumps({"row": r, "response": t}) + "\n" for r, t in requests))
    invoke("score", states, "--responses", responses, "--reward", "f1", "--out", work / f"{export.name}-scores.jsonl")
    scores = [json.loads(line)["reward"] for line in (work / f"{export.name}-scores.jsonl").read_text().splitlines()]
    episodes = []
    with ToolRuntime(RuntimeConfig(timeout_s=10.0)) as runtime:
        for row, env in enumerate(e for e in envs if all(m["role"] in ("system", "user") for m in e.messages)):
            score, turns, outputs, contexts = EpisodeScore.start(env.unsolved_set), [], [], []
            conversation = list(env.messages)
            for calls in gold_turns(env):
                contexts.append(ids_of(tokenizer, conversation, env.tools))
                message = {"role": "assistant", "content": "", "tool_calls": calls}
                with runtime.episode(env.codes) as episode:
                    out = episode.call_many([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
                score.add_turn(message, out)
                turns.append(hermes.render(message))
                outputs.append(out)
                conversation += [message, *({"role": "tool", "content": text} for text in out)]
            contexts.append(ids_of(tokenizer, conversation, env.tools))
            answer = hermes.render(oracle.generate([conversation], [env.tools])[0])
            episodes.append(
                {
                    "row": row,
                    "turns": turns,
                    "outputs": outputs,
                    "solve_f1": score.solve_f1,
                    "prompt_ids": contexts[0],
                    "contexts": contexts,
                    "answer": answer,
                }
            )
    return {
        "prompt_ids": [tokenizer(render_prompt(tokenizer, env), add_special_tokens=False).input_ids for env in envs],
        "responses": [
            [{"text": t, "reward": s} for (r, t), s in zip(requests, scores, strict=False) if r == row]
            for row in range(len(envs))
        ],
        "gold_calls": [len(oracle.generate([env.messages], [env.tools])[0]["tool_calls"] or []) for env in envs],
        "episodes": episodes,
    }


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("verl-case")
    invoke("build", "--backend", "procedural", "--n", "4", "--seed", "3", "--out", work / "envs.jsonl")
    invoke("sample", "--model", "oracle", "--envs", work / "envs.jsonl", "--out", work / "states.jsonl")
    exports = []
    for name, (path, model_type) in tokenizers(work / "tokenizers").items():
        out = work / name
        invoke("export", "verl", "--data", work / "states.jsonl", "--out", out, "--model", path, "--multi-turn")
        exports.append(
            {
                "name": name,
                "dir": str(out),
                "tokenizer": str(path),
                "model_type": model_type,
                **expectations(work / "states.jsonl", out, path, work),
            }
        )
    (work / "case.json").write_text(json.dumps({"exports": exports}))
    return work / "case.json"


def test_verl_runs_the_export(case: Path) -> None:
    """Config compose + validate_config, reward loading and scoring, dataset tokenization, the multi-turn loop:
    all with verl 0.9.1's own code (tests/verl/check_verl.py, run in the verl environment)."""
    env = {**os.environ, "FTRL_VERL_CASE": str(case), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    check = ROOT / "tests" / "verl" / "check_verl.py"
    result = subprocess.run(
        [VERL_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), str(check)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    sys.stdout.write(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
