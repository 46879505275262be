"""Resumable checkpoints: trainable weights, optimizer, RNG states and the data position, written atomically.

Only trainable parameters are stored (the LoRA adapter, or every weight for full fine-tuning); the frozen base
comes from the original model path on resume. Each checkpoint is written to a temporary folder and renamed into
`checkpoints/step_<k>`, so a run killed mid-save resumes from the previous complete one. Restoring the RNG
states makes a resumed run sample exactly what the uninterrupted run would have sampled.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ftrl.jsonl import atomic_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel

STATE_FILE = "trainer_state.json"


def checkpoint_dir(out: str | Path) -> Path:
    return Path(out) / "checkpoints"


def save_checkpoint(
    out: str | Path, model: PreTrainedModel, optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int
) -> Path:
    """Write `checkpoints/step_<state['step']>` and delete all but the newest `keep` checkpoints."""
    from safetensors.torch import save_file

    root = checkpoint_dir(out)
    target = root / f"step_{state['step']}"
    for leftover in root.glob(".step_*.tmp"):  # of a save killed midway; the run's output is locked to this one
        shutil.rmtree(leftover, ignore_errors=True)
    with atomic_path(target) as temporary:
        temporary.mkdir()
        weights = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(weights, temporary / "trainable.safetensors")
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None  # CUDA sampling draws from it
        rng = {"torch": torch.get_rng_state(), "cuda": cuda, "python": random.getstate()}
        torch.save(rng, temporary / "rng.pt")
        (temporary / STATE_FILE).write_text(json.dumps(state, indent=2))
    for old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_dir(out)
    found = [p for p in root.glob("step_*") if (p / STATE_FILE).exists()] if root.exists() else []
    return sorted(found, key=lambda p: int(p.name.removeprefix("step_")))


def load_checkpoint(path: Path, model: PreTrainedModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights, optimizer and RNG states in place; returns the saved trainer state."""
    from safetensors.torch import load_file

    weights = load_file(path / "trainable.safetensors")
    missing = set(weights) - {name for name, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{path}: checkpoint does not match the model (e.g. {min(missing)})")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(rng["python"])
    return json.loads((path / STATE_FILE).read_text())
