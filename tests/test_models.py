"""`ftrl.models`: the local path's placement (`--device`, `--dtype`) and hub ids from the Hugging Face cache, as far as
a CPU can tell; benchmarks/gpu_check.sh runs the same code on CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ftrl.cli import app
from ftrl.models import ModelNotFound, placement, resolve_model
from ftrl.rollout.hf import HFConfig, HFPolicy
from ftrl.settings import SamplingConfig
from ftrl.train.actor import group_logprobs, load_trainable_model
from ftrl.train.tiny import build_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the choices of a machine without CUDA")
def test_placement_on_a_cpu_machine() -> None:
    assert placement() == (torch.device("cpu"), torch.float32)
    assert placement(training=True) == (torch.device("cpu"), torch.float32)
    assert placement("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ValueError, match="sees no CUDA device"):
        placement("cuda")
    with pytest.raises(ValueError, match="unknown dtype"):
        placement("cpu", "int8")
    with pytest.raises(ValueError, match="unknown device"):
        placement("tpu")


def test_bf16_policy_decodes_and_scores(tiny: Path) -> None:
    """The decoder's buffers follow the model's dtype and device; training log-probs come back to the batch's device."""
    policy = HFPolicy.load(str(tiny), HFConfig(sampling=SamplingConfig(max_new_tokens=4), device="cpu", dtype="bf16"))
    assert policy.model.dtype == torch.bfloat16
    replies = policy.generate([[{"role": "user", "content": "hi"}]] * 2)
    assert len(replies) == 2 and policy.stats.completion_tokens > 0
    model, _ = load_trainable_model(tiny, device="cpu", dtype="bf16")
    log_probs, entropy = group_logprobs(model, torch.tensor([5, 6, 7]), torch.tensor([[8, 9], [10, 11]]), 1.0, True)
    assert log_probs.shape == (2, 2) and log_probs.dtype == torch.float32 and entropy is not None


def fake_hub_cache(root: Path, repo_id: str, model: Path) -> Path:
    """The layout transformers downloads into: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    folder = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in model.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_hub_ids_resolve_from_the_cache_only(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = fake_hub_cache(tmp_path / "hub", "tiny-org/Tiny-Chat", tiny)
    assert resolve_model("tiny-org/Tiny-Chat") == snapshot
    with pytest.raises(ModelNotFound, match="not in the Hugging Face cache.*does not download"):
        resolve_model("Qwen/Qwen2.5-7B-Instruct")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "Qwen/Qwen2.5-7B-Instruct",
            "--data",
            str(tmp_path / "x.jsonl"),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code != 0 and "hf download Qwen/Qwen2.5-7B-Instruct" in " ".join(result.output.split())
    assert json.loads((snapshot / "config.json").read_text())["model_type"] == "llama"


def test_placement_choices_when_cuda_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `auto` picks on a GPU machine: CUDA, bf16 for generation, fp32 weights for training."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert placement() == (torch.device("cuda"), torch.bfloat16)
    assert placement(training=True) == (torch.device("cuda"), torch.float32)
    assert placement("cpu") == (torch.device("cpu"), torch.float32)
    assert placement("auto", "fp16") == (torch.device("cuda"), torch.float16)
