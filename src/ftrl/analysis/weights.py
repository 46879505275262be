"""Read HF safetensors checkpoints one tensor at a time, and refuse pairs that are not the same architecture.

Comparing a 7B base with its fine-tune must not hold two models in memory, so tensors are read lazily from the
(possibly sharded) safetensors files. Comparisons are only meaningful between checkpoints of one architecture,
so mismatches stop early with an error that names the differing setting or tensor.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ftrl.analysis.names import ParamKey, parse_name

if TYPE_CHECKING:
    import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


class WeightsError(ValueError):
    """A checkpoint directory that cannot be read, or a pair of checkpoints that cannot be compared."""


@dataclass
class ModelWeights:
    """A model directory: its config and where each tensor is stored."""

    path: Path
    config: dict[str, Any]
    files: dict[str, str]  # tensor name -> safetensors file name inside `path`

    @classmethod
    def open(cls, path: str | Path) -> ModelWeights:
        """Index a directory holding `model.safetensors` or a sharded `model.safetensors.index.json`."""
        folder = Path(path)
        if not folder.is_dir():
            raise WeightsError(f"{folder}: not a model directory")
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        if (folder / INDEX_FILE).exists():
            index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
            return cls(folder, config, dict(index["weight_map"]))
        if (folder / SINGLE_FILE).exists():
            from safetensors import safe_open

            with safe_open(str(folder / SINGLE_FILE), framework="pt") as handle:
                return cls(folder, config, dict.fromkeys(handle.keys(), SINGLE_FILE))
        raise WeightsError(_missing_weights_hint(folder))

    def setting(self, *names: str) -> Any:
        """A config value under any of `names`, also looking inside `text_config` (multimodal wrappers)."""
        for scope in (self.config, self.config.get("text_config") or {}):
            for name in names:
                if scope.get(name) is not None:
                    return scope[name]
        return None

    @property
    def n_layers(self) -> int:
        """Decoder layer count from the config, or from the tensor names when the config does not say."""
        configured = self.setting("num_hidden_layers", "n_layer", "num_layers")
        if configured is not None:
            return int(configured)
        layers = [key.layer for key in self.keys().values() if key.layer is not None]
        return max(layers) + 1 if layers else 0

    def tied_head(self) -> str | None:
        """The stored head tensor that is only a copy of the tied input embedding, if there is one."""
        if not self.setting("tie_word_embeddings"):
            return None
        kinds = {name: parse_name(name).kind for name in self.files}
        if "embed" not in kinds.values():
            return None
        return next((name for name, kind in kinds.items() if kind == "head"), None)

    def keys(self) -> dict[str, ParamKey]:
        """Every tensor's (layer, kind); a tied head counts as the embedding it shares weights with."""
        alias = self.tied_head()
        return {name: ParamKey(None, "embed") if name == alias else parse_name(name) for name in self.files}


class TensorReader:
    """Open shards lazily and hand out one tensor at a time (a context manager closing every shard)."""

    def __init__(self, checkpoint: ModelWeights):
        self.checkpoint = checkpoint
        self._stack = ExitStack()
        self._handles: dict[str, Any] = {}

    def _handle(self, name: str) -> Any:
        from safetensors import safe_open

        file = self.checkpoint.files[name]
        if file not in self._handles:
            path = self.checkpoint.path / file
            if not path.exists():
                raise WeightsError(f"{path}: shard named in the index is missing")
            self._handles[file] = self._stack.enter_context(safe_open(str(path), framework="pt"))
        return self._handles[file]

    def tensor(self, name: str) -> torch.Tensor:
        return self._handle(name).get_tensor(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle(name).get_slice(name).get_shape())

    def dtype(self, name: str) -> torch.dtype:
        import torch

        return getattr(torch, _DTYPES[self._handle(name).get_slice(name).get_dtype()])

    def metadata(self, file: str) -> dict[str, str]:
        """The `__metadata__` of one shard (HF writes `{"format": "pt"}`)."""
        name = next(tensor for tensor, shard in self.checkpoint.files.items() if shard == file)
        return dict(self._handle(name).metadata() or {})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


@dataclass
class Pair:
    """A base and a tuned checkpoint known to share architecture, tensor names and shapes."""

    base: ModelWeights
    tuned: ModelWeights

    @property
    def names(self) -> list[str]:
        """Tensor names in the tuned checkpoint's order."""
        return list(self.tuned.files)


def open_pair(base: str | Path, tuned: str | Path) -> Pair:
    """Open both checkpoints and check they are comparable; raise `WeightsError` saying what differs."""
    pair = Pair(ModelWeights.open(base), ModelWeights.open(tuned))
    for label, names in (
        ("model_type", ("model_type",)),
        ("layer count", ("num_hidden_layers", "n_layer", "num_layers")),
        ("hidden size", ("hidden_size", "n_embd", "d_model")),
    ):
        left, right = pair.base.setting(*names), pair.tuned.setting(*names)
        if left != right:
            raise WeightsError(f"different architectures: {label} is {left!r} in base, {right!r} in tuned")
    missing = sorted(set(pair.base.files) - set(pair.tuned.files))
    extra = sorted(set(pair.tuned.files) - set(pair.base.files))
    if missing or extra:
        parts = [
            f"{what} {_few(names)}"
            for what, names in (("missing in tuned:", missing), ("extra in tuned:", extra))
            if names
        ]
        hint = (
            " (unmerged LoRA weights? merge the adapter into the base first)" if any("lora" in n for n in extra) else ""
        )
        raise WeightsError("different tensor names: " + "; ".join(parts) + hint)
    with TensorReader(pair.base) as left, TensorReader(pair.tuned) as right:
        for name in pair.names:
            if left.shape(name) != right.shape(name):
                raise WeightsError(
                    f"tensor {name!r} has shape {left.shape(name)} in base, {right.shape(name)} in tuned"
                )
    return pair


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _missing_weights_hint(folder: Path) -> str:
    if (folder / "adapter_model.safetensors").exists():
        return f"{folder}: holds only a LoRA adapter; merge it (peft `merge_and_unload()` then `save_pretrained`) first"
    if any(folder.glob("*.bin")):
        return f"{folder}: only PyTorch .bin weights; re-save with `save_pretrained(..., safe_serialization=True)`"
    return f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}"
