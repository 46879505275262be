"""`ftrl export verl`: the generated reward module scores exactly like `score_response`, and every exported prompt
renders as `ftrl train` renders it. verl itself checks the export in tests/test_verl_real.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest

from ftrl.env import Environment, read_envs, write_envs
from ftrl.export import export_verl
from ftrl.export.verl import ExportError, flat_prompt
from ftrl.reward import RewardSpec, score_response
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.train.tiny import build_tiny_model
from ftrl.train.trainer import prompt_messages, render_prompt

QWEN_TEMPLATE = Path(__file__).parent / "fixtures" / "qwen25_chat_template.jinja"

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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer whose ChatML template has no tool support (tools go into the system prompt)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def qwen_style(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tokenizer with a Qwen2.5-style template that renders `tools=` in the system message."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    tokenizer.chat_template = QWEN_TEMPLATE.read_text()
    out = tmp_path_factory.mktemp("qwen") / "model"
    tokenizer.save_pretrained(out)
    (out / "config.json").write_text((tiny / "config.json").read_text())
    return out


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


def test_export_rows_and_reward_module_agree_with_score_response(states: Path, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "verl"
    written = export_verl(states, out, model=str(tiny), reward=RewardSpec(kind="f1"))
    assert {p.name for p in written} == {
        "train.parquet",
        "ftrl_reward.py",
        "train_grpo.sh",
        "train_reinforce_plus_plus.sh",
    }
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
        for row, env in zip(rows, envs, strict=False):
            for text in RESPONSES:
                direct = score_response(text, env, runtime).reward
                exported = module.compute_score(
                    row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"]
                )
                assert exported == direct, (text, env.unsolved_set)
            if row is rows[0]:
                got = [module.compute_score("s", t, "ALPHA", row["extra_info"]) for t in RESPONSES]
                assert got == pytest.approx(expected_first)


def test_export_reward_kind_and_scripts(states: Path, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "verl"
    export_verl(states, out, model=str(tiny), reward=RewardSpec(kind="p"))
    row = pq.read_table(out / "train.parquet").to_pylist()[0]
    module = load_module(out / "ftrl_reward.py")
    # Solve-P of one solving and one failing call: q/p = 1/2
    assert module.compute_score("s", RESPONSES[1], "ALPHA", row["extra_info"]) == 0.5
    grpo = (out / "train_grpo.sh").read_text()
    assert "algorithm.adv_estimator=grpo" in grpo and "reward.custom_reward_function.path=" in grpo
    assert "\n    custom_reward_function" not in grpo and "reward_model." not in grpo  # keys main_ppo 0.9.1 ignores
    assert 'trainer.logger="${LOGGER:-[console]}"' in grpo and f'model.path="${{MODEL:-{tiny}}}"' in grpo
    assert "actor_rollout_ref.actor.kl_loss_type=low_var_kl" in grpo and "rollout.temperature=0.7" in grpo
    assert "algorithm.adv_estimator=reinforce_plus_plus" in (out / "train_reinforce_plus_plus.sh").read_text()
    assert not (out / "episodes.parquet").exists()


@pytest.mark.parametrize("template", ["tiny", "qwen_style"])
def test_exported_prompt_is_ftrl_trains_for_every_template(
    template: str, states: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Rendered by the template without `tools=` (as verl's single-turn loop does), every row is ftrl's prompt:
    tools in the system prompt for a template without tool support, the template's own tools block otherwise,
    also for a state with earlier tool-calling turns."""
    from transformers import AutoTokenizer

    model = request.getfixturevalue(template)
    tokenizer = AutoTokenizer.from_pretrained(model)
    env = read_envs(states)[0]
    call = {"id": "c0", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "alpha"}'}}
    later = dataclasses.replace(
        env,
        messages=[
            *env.messages,
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "{'answer': 'ALPHA', 'n': 2}"},
        ],
    )
    write_envs(tmp_path / "two.jsonl", [env, later])
    export_verl(tmp_path / "two.jsonl", tmp_path / "out", model=str(model))
    rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    for row, state in zip(rows, [env, later], strict=False):
        assert all(set(m) == {"role", "content"} for m in row["prompt"])
        verl_view = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert verl_view == render_prompt(tokenizer, state)
    native = template == "qwen_style"
    assert ("<tools>" in rows[0]["prompt"][0]["content"]) and ('"name": "lookup"' in rows[0]["prompt"][0]["content"])
    assert ("You are Qwen" in rows[0]["prompt"][0]["content"]) == native  # the template's own block, not ftrl's


def test_flat_prompt_refuses_templates_it_cannot_reproduce(tiny: Path) -> None:
    """A template that puts tools outside the system message cannot be flattened: a clear error, no wrong prompt."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}{% if tools and loop.last %}"
        " TOOLS{{ tools | length }}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
        "<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ExportError, match="multi-turn"):
        flat_prompt(tokenizer, [{"role": "user", "content": "hi"}], [LOOKUP])


def test_multi_turn_export(states: Path, qwen_style: Path, tmp_path: Path) -> None:
    out = tmp_path / "verl"
    written = export_verl(states, out, model=str(qwen_style), multi_turn=True)
    assert {p.name for p in written} >= {"episodes.parquet", "ftrl_agent_loop.yaml", "train_multiturn_grpo.sh"}
    rows = pq.read_table(out / "episodes.parquet").to_pylist()
    assert len(rows) == 2 and rows[0]["agent_name"] == "ftrl_tool_agent"
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is alpha?"}]  # native tools: raw messages
    info = rows[0]["extra_info"]
    assert info["mode"] == "episode" and info["n_gold"] == 1 and json.loads(info["tools"]) == [LOOKUP]
    assert json.loads(info["state"])["unsolved_set"] == {"lookup": ["ALPHA"]}
    script = (out / "train_multiturn_grpo.sh").read_text()
    assert 'agent_loop_config_path="$HERE/ftrl_agent_loop.yaml"' in script and "episodes.parquet" in script


def test_launch_scripts_take_the_paper_hyperparameters_from_train_config() -> None:
    from dataclasses import fields

    from ftrl.export.verl import paper_overrides, verl_value
    from ftrl.train.config import make_config

    overrides = dict(item.split("=", 1) for item in paper_overrides())
    paper = make_config("paper")
    restated = [item for item in fields(paper) if "verl" in item.metadata]
    assert len(restated) == 20
    for item in restated:  # declared once: the config's paper value is what the scripts pass to verl
        assert overrides[item.metadata["verl"]] == verl_value(getattr(paper, item.name)), item.name
    assert overrides["actor_rollout_ref.actor.optim.lr"] == "1e-6" and overrides["actor_rollout_ref.rollout.n"] == "16"
    assert overrides["actor_rollout_ref.actor.use_kl_loss"] == "True"
    assert verl_value(1e-6) == "1e-6" and verl_value(1.0) == "1.0" and verl_value(2.5e10) == "25000000000.0"
