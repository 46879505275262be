"""The int8 engine (`ftrl.rollout.quant`): kvgen decodes the int8 copy exactly as transformers' generate does,
it stays close to fp32, a weight sync brings it up to the trained weights, and the engine named is the one used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftrl.rollout.hf import HFConfig, HFPolicy, hf_generate
from ftrl.rollout.kvgen import generate_batch
from ftrl.rollout.quant import quantize_int8, sync_int8
from ftrl.settings import SamplingConfig
from ftrl.train.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden=64)


@pytest.fixture()
def mixer():
    """A random Llama (grouped-query attention, untied head) whose next token depends on the whole context."""
    config = transformers.LlamaConfig(
        vocab_size=259,
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


def _prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(3, 259, (n,), generator=generator).tolist() for n in (40, 17, 63)]


def _int8_layers(model) -> int:
    from torch.ao.nn.quantized.dynamic import Linear

    return sum(isinstance(module, Linear) for module in model.modules())


def test_kvgen_decodes_the_int8_copy_exactly_as_generate_does(mixer):
    quantized = quantize_int8(mixer)
    assert _int8_layers(quantized) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the LM head
    assert _int8_layers(mixer) == 0  # the fp32 model is left as it was
    sampling = SamplingConfig(max_new_tokens=10)
    kvgen = generate_batch(quantized, _prompts(), {2}, sampling)
    assert kvgen == hf_generate(quantized, _prompts(), {2}, sampling, pad_id=0)


def test_int8_copy_stays_close_to_fp32(mixer):
    ids = torch.tensor([_prompts()[2]])
    with torch.no_grad():
        exact = torch.log_softmax(mixer(ids).logits, -1)
        close = torch.log_softmax(quantize_int8(mixer)(ids).logits, -1)
        head_fp32 = torch.log_softmax(quantize_int8(mixer, lm_head=False)(ids).logits, -1)
    gap = (exact - close).abs().mean().item()
    assert 0 < gap < 0.02  # a different model, but per-channel int8 keeps it near
    assert (exact - head_fp32).abs().mean().item() < gap  # the fp32 head removes part of the difference
    assert (exact.argmax(-1) == close.argmax(-1)).float().mean() > 0.9


def test_sync_brings_the_int8_copy_to_the_updated_weights(mixer):
    quantized = quantize_int8(mixer)
    ids = torch.tensor([_prompts()[0]])
    sampling = SamplingConfig(max_new_tokens=12)
    before = generate_batch(quantized, _prompts(), {2}, sampling)
    with torch.no_grad():
        for parameter in mixer.parameters():
            parameter.add_(torch.randn_like(parameter) * parameter.std())
        stale = quantized(ids).logits
        sync_int8(quantized, mixer)
        synced = quantized(ids).logits
        fresh = quantize_int8(mixer)(ids).logits
    assert torch.equal(synced, fresh)  # the same as quantizing the new weights from scratch
    assert not torch.allclose(stale, synced)
    assert generate_batch(quantized, _prompts(), {2}, sampling) != before


def test_policy_decodes_with_the_engine_it_names(tiny):
    sampling = SamplingConfig(max_new_tokens=8)
    fp32 = HFPolicy.load(str(tiny), HFConfig(sampling=sampling, engine="kvgen"))
    int8 = HFPolicy.load(str(tiny), HFConfig(sampling=sampling, engine="int8"))
    assert (fp32.engine, int8.engine) == ("kvgen", "int8")
    assert fp32.decoder_model is fp32.model and _int8_layers(fp32.decoder_model) == 0
    assert _int8_layers(int8.decoder_model) > 0
    seen = []
    original = int8.decoder_model.forward
    int8.decoder_model.forward = lambda *a, **k: seen.append(1) or original(*a, **k)
    int8.generate([[{"role": "user", "content": "hello"}]], None)
    assert seen  # the int8 copy ran the forwards


def test_decoder_records_the_sampled_tokens_log_probs(mixer):
    sampling = SamplingConfig(max_new_tokens=6, temperature=0.8)
    logprobs: list[list[float]] = []
    outputs = generate_batch(mixer, _prompts(), {2}, sampling, logprobs=logprobs)
    for prompt, out, values in zip(_prompts(), outputs, logprobs, strict=True):
        with torch.no_grad():
            logits = mixer(torch.tensor([prompt + out])).logits[0, len(prompt) - 1 : -1] / 0.8
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(out)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(values), expected, atol=1e-4)


@pytest.mark.parametrize("engine", ["kvgen", "int8"])
def test_trainer_samples_with_the_engine_and_syncs_it(tiny, tmp_path, engine):
    from ftrl.env import Environment, write_envs
    from ftrl.train.config import make_config
    from ftrl.train.trainer import Trainer

    envs = [
        Environment(
            messages=[{"role": "user", "content": f"Say {w}"}],
            tools=[],
            codes={},
            unsolved_set={},
            solve_rate=1.0,
            answer=w,
        )
        for w in ("alpha", "beta")
    ]
    write_envs(tmp_path / "states.jsonl", envs)
    config = make_config(
        "cpu", model=str(tiny), data=str(tmp_path / "states.jsonl"), out=str(tmp_path / "run"), n=4,
        max_new_tokens=8, batch_states=2, mini_batch_states=2, lr=1e-2, kl_coef=0.0, engine=engine,
    )  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(config, scorer=lambda env, text: (text.count("a") / max(1, len(text)), 0))
    metrics = trainer.train_step(trainer.scorer)
    if engine == "kvgen":
        assert trainer.sampler is trainer.model and metrics["seconds_sync"] == 0.0
        assert metrics["logprob_mismatch"] < 1e-3  # the same fp32 weights: only summation order differs
        return
    assert _int8_layers(trainer.sampler) > 0 and metrics["seconds_sync"] > 0
    assert 1e-4 < metrics["logprob_mismatch"] < 0.5
    ids = torch.tensor([trainer.prompts[0]])
    with torch.no_grad():
        assert torch.equal(trainer.sampler(ids).logits, quantize_int8(trainer.model)(ids).logits)
    json.dumps(metrics)  # the step's metrics stay loggable


def test_int8_training_refuses_lora():
    from ftrl.train.config import make_config

    with pytest.raises(ValueError, match="lora"):
        make_config("cpu", lora=True, engine="int8")


@pytest.mark.parametrize("command", ["eval", "sample", "train", "loop", "demo"])
def test_every_generating_command_takes_engine(command):
    from typer.testing import CliRunner

    from ftrl.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--engine" in result.output


def test_loop_and_demo_train_with_the_engine_they_generate_with(tmp_path):
    from ftrl.recipes.demo import Demo, DemoConfig

    engines = [
        DemoConfig(engine=e).train_config("m", tmp_path, tmp_path, 1).engine for e in ("auto", "kvgen", "int8", "hf")
    ]
    assert engines == ["kvgen", "kvgen", "int8", "kvgen"]
    demo = Demo(DemoConfig(engine="int8", out=str(tmp_path / "d")))  # the loop collects, evaluates, trains with int8
    loop = demo.loop_config()
    assert loop.engine == "int8" and loop.train_config("m", tmp_path, tmp_path, 1).engine == "int8"
    assert Demo(DemoConfig(out=str(tmp_path / "e"))).loop_config().train.engine == "kvgen"
