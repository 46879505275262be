"""Build hybrid checkpoints: tuned parameters only where a SPEC says, base parameters elsewhere (or the reverse).

Parameter-change statistics only show where weights moved; evaluating a model that keeps the tuned weights in
the MLPs of layers 0-2 and the base weights everywhere else is the causal test of whether those weights carry
the gain. The output mirrors the tuned directory (config, tokenizer, generation config, shard layout), so
`AutoModelForCausalLM.from_pretrained` and `ftrl eval --model` load it like any other model. Shards are written
one at a time and renamed into place only when complete, so an interrupted run leaves no half-written model.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ftrl.analysis.spec import Spec, SpecError, parse_spec
from ftrl.analysis.weights import Pair, TensorReader, WeightsError, open_pair
from ftrl.jsonl import atomic_path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".pkl")
PROVENANCE = "ftrl_restore.json"


@dataclass
class RestoreResult:
    """What went where; also written to `ftrl_restore.json` in the output directory."""

    base: str
    tuned: str
    spec: str
    mode: str  # "keep": tuned only inside SPEC; "revert": tuned everywhere except SPEC
    out: str
    from_tuned: list[str]
    from_base: list[str]


def restore(
    base: str | Path, tuned: str | Path, spec: str | Spec, out: str | Path, *, revert: bool = False
) -> RestoreResult:
    """Write a model directory taking tuned tensors inside SPEC (`revert=False`) or outside it (`revert=True`)."""
    pair = open_pair(base, tuned)
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    spec.check_layers(pair.tuned.n_layers)
    target = Path(out)
    if target.exists():
        raise WeightsError(f"{target}: already exists; remove it or choose another output directory")
    selected = {name for name, key in pair.tuned.keys().items() if spec.matches(key)}
    if not selected:
        tied = " (a head tied to the input embedding is selected as 'embed')" if "head" in spec.text else ""
        raise SpecError(f"SPEC {spec.text!r} selects no tensor of this model{tied}")
    take_tuned = set(pair.names) - selected if revert else selected
    result = RestoreResult(
        base=str(base),
        tuned=str(tuned),
        spec=spec.text,
        mode="revert" if revert else "keep",
        out=str(target),
        from_tuned=[name for name in pair.names if name in take_tuned],
        from_base=[name for name in pair.names if name not in take_tuned],
    )
    with atomic_path(target) as partial:
        partial.mkdir()
        _copy_side_files(pair.tuned.path, partial)
        _write_shards(pair, take_tuned, partial)
        (partial / PROVENANCE).write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return result


def _write_shards(pair: Pair, take_tuned: set[str], folder: Path) -> None:
    """One output shard per tuned shard, same names, each tensor from the chosen side in the tuned dtype."""
    from safetensors.torch import save_file

    shards: dict[str, list[str]] = defaultdict(list)
    for name in pair.names:
        shards[pair.tuned.files[name]].append(name)
    with TensorReader(pair.base) as base, TensorReader(pair.tuned) as tuned:
        for file, names in shards.items():
            tensors = {}
            for name in names:
                tensor = tuned.tensor(name) if name in take_tuned else base.tensor(name)
                tensors[name] = tensor.to(tuned.dtype(name)).contiguous()
            save_file(tensors, str(folder / file), metadata={**tuned.metadata(file), "format": "pt"})


def _copy_side_files(source: Path, folder: Path) -> None:
    """Config, generation config, tokenizer, chat template, index: every top-level file that is not weights."""
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name != PROVENANCE:
            shutil.copy2(path, folder / path.name)
