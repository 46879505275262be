"""`ftrl export verl`: the generated reward module scores exactly like `score_response`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest

from ftrl.env import Environment, read_envs, write_envs
from ftrl.export import export_verl
from ftrl.reward import score_response
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.train.trainer import prompt_messages

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a fact.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
}
CODE = "def lookup(q):\n    return {'answer': q.upper(), 'n': 2}\n"


def call(name: str, **arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


RESPONSES = [
    call("lookup", q="alpha"),  # solves the pending ALPHA: f1 2*1/(1+1) = 1
    call("lookup", q="alpha") + "\n" + call("lookup", q="zeta"),  # 1 of 2 solve: 2/3
    call("lookup", q="zeta") + "<|im_end|>",  # a call that solves nothing: 0
    call("missing", q="alpha"),  # unknown tool: error text, 0
    "",  # empty: -0.5
    "<tool_call>{broken json</tool_call>",  # unparsed call markers: -0.3
    "The answer is ALPHA.",  # gold answer in text with 1 pending: 1/(1+1)
    "I do not know.",  # nothing: 0
]


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("ftrl_reward_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def states(tmp_path: Path) -> Path:
    envs = [
        Environment(
            messages=[{"role": "user", "content": "What is alpha?"}],
            tools=[LOOKUP],
            codes={"lookup": CODE},
            unsolved_set={"lookup": ["ALPHA"]},
            answer="ALPHA",
            data_source="self/single_hop",
            split="train",
            extra={"index": 5, "episode_id": "e5"},
        ),
        Environment(  # a later state: everything solved, no final answer yet
            messages=[{"role": "user", "content": "What is beta?"}],
            tools=[LOOKUP],
            codes={"lookup": CODE},
            unsolved_set={"lookup": []},
            solve_rate=1.0,
            answer="",
            data_source="self/single_hop",
            split="train",
        ),
    ]
    path = tmp_path / "states.jsonl"
    write_envs(path, envs)
    return path


def test_export_rows_and_reward_module_agree_with_score_response(states: Path, tmp_path: Path) -> None:
    out = tmp_path / "verl"
    written = export_verl(states, out, reward="f1")
    assert {p.name for p in written} == {"train.parquet", "ftrl_reward.py", "train_grpo.sh", "train_reinforce_pp.sh"}
    rows = pq.read_table(out / "train.parquet").to_pylist()
    envs = read_envs(states)
    assert len(rows) == 2
    first = rows[0]
    assert first["extra_info"]["index"] == 5 and first["extra_info"]["episode_id"] == "e5"
    assert rows[1]["extra_info"]["index"] == 1  # no index column -> the row number
    assert first["reward_model"] == {"style": "rule", "ground_truth": "ALPHA"}
    assert first["prompt"] == prompt_messages(envs[0])
    assert json.loads(first["tools"]) == [LOOKUP]
    module = load_module(out / "ftrl_reward.py")
    expected_first = [1.0, 2 / 3, 0.0, 0.0, -0.5, -0.3, 0.5, 0.0]
    with ToolRuntime(RuntimeConfig(timeout_s=10.0)) as runtime:
        for row, env in zip(rows, envs):
            for text in RESPONSES:
                direct = score_response(
                    text, codes=env.codes, unsolved_set=env.unsolved_set, solve_rate=env.solve_rate,
                    answer=env.answer or None, runtime=runtime,
                ).reward
                exported = module.compute_score(
                    row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"]
                )
                assert exported == direct, (text, env.unsolved_set)
            if row is rows[0]:
                got = [module.compute_score("s", t, "ALPHA", row["extra_info"]) for t in RESPONSES]
                assert got == pytest.approx(expected_first)


def test_export_reward_kind_and_scripts(states: Path, tmp_path: Path) -> None:
    out = tmp_path / "verl"
    export_verl(states, out, reward="p", tools_in_prompt=False)
    row = pq.read_table(out / "train.parquet").to_pylist()[0]
    assert row["prompt"] == [{"role": "user", "content": "What is alpha?"}]
    module = load_module(out / "ftrl_reward.py")
    # Solve-P of one solving and one failing call: q/p = 1/2
    assert module.compute_score("s", RESPONSES[1], "ALPHA", row["extra_info"]) == 0.5
    grpo = (out / "train_grpo.sh").read_text()
    assert "algorithm.adv_estimator=grpo" in grpo and "data.tools_key=tools" in grpo
    assert "actor_rollout_ref.actor.kl_loss_type=low_var_kl" in grpo and "rollout.temperature=0.7" in grpo
    assert "algorithm.adv_estimator=reinforce_plus_plus" in (out / "train_reinforce_pp.sh").read_text()
