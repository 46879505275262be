"""int8 weights for generation on a CPU: a copy of a model whose `nn.Linear` layers compute in int8 (torch dynamic
quantization, per-output-channel symmetric weights), decoded by kvgen like the fp32 model.

Why: this CPU's int8 (VNNI) matmuls run 5-16x faster than fp32 at the 64-512 rows a packed kvgen forward has, and
per-channel scales keep the model far closer to fp32 than one scale per tensor (issue 24). Activations are
quantized per forward (dynamic), so nothing is calibrated. The embedding stays fp32; the LM head (tied to it in
SmolLM2) is quantized too unless `lm_head=False` (benchmarks/RESULTS.md, "Generation at int8", measured both).

The quantized copy is a different model: `sync_int8` re-quantizes it from the fp32 weights after every optimizer
step, and the trainer reports how far its log-probabilities are from the fp32 model's (`logprob_mismatch`).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn


def _dynamic() -> Any:
    """torch's dynamic-quantization API (deprecated in favour of torchao, still shipped), its warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized import dynamic
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        from torch.ao.quantization.observer import default_per_channel_weight_observer

    return dynamic, per_channel_dynamic_qconfig, quantize_dynamic, default_per_channel_weight_observer


def _quantizable(model: nn.Module, lm_head: bool) -> set[str]:
    """Names of the Linear layers to quantize: all of them, the LM head only when `lm_head`."""
    output_embeddings: Any = getattr(model, "get_output_embeddings", None)
    head = output_embeddings() if output_embeddings is not None else None
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (lm_head or module is not head)
    }


def quantize_int8(model: nn.Module, lm_head: bool = True) -> nn.Module:
    """An eval-mode copy of `model` with int8 per-channel Linear layers (`model` itself is left as it is)."""
    _, qconfig, quantize_dynamic, _ = _dynamic()
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("the int8 engine runs on a CPU (torch dynamic quantization has no CUDA kernels)")
    names = _quantizable(model, lm_head)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copied = copy.deepcopy(model).eval()
        for parameter in copied.parameters():
            parameter.requires_grad_(False)
        quantized = quantize_dynamic(copied, {name: qconfig for name in names}, inplace=True)
    quantized.ftrl_int8_layers = sorted(names)
    return quantized


@torch.no_grad()
def sync_int8(quantized: nn.Module, model: nn.Module) -> None:
    """Bring `quantized` (from `quantize_int8(model)`) up to `model`'s current weights: re-quantize every int8
    layer from its fp32 weight and copy every other parameter and buffer (embeddings, norms)."""
    dynamic, _, _, observer = _dynamic()
    source = dict(model.named_modules())
    for name, module in quantized.named_modules():
        if not isinstance(module, dynamic.Linear):
            continue
        weight = source[name].weight.detach().float()
        bias = source[name].bias
        watch = observer()
        watch(weight)
        scales, zero_points = watch.calculate_qparams()
        qweight = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
        module.set_weight_bias(qweight, None if bias is None else bias.detach().float())
    targets = dict(quantized.named_parameters()) | dict(quantized.named_buffers())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name in targets and targets[name].shape == tensor.shape:
            targets[name].copy_(tensor.detach())
