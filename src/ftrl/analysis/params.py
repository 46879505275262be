"""Where did fine-tuning move the weights? Per layer and module kind: relative change, mean |change|, update share.

For a group G of tensors (e.g. layer 1's `mlp.down`), with delta = theta_tuned - theta_base:

* relative change  = ||delta_G||_F / ||theta_base_G||_F   (Frobenius norms over all elements of the group)
* mean abs change  = sum |delta_G| / numel_G
* share            = ||delta_G||_F^2 / sum over all groups ||delta||_F^2   (shares add up to 1 over the model)

Tensors are read one pair at a time and in chunks, differences are taken in float32 and summed in float64, so
a 7B comparison needs roughly one tensor of each checkpoint in memory, not two models. A tied output head is
the input embedding under a second name and is counted once, as `embed`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ftrl.analysis.names import COARSE_KINDS, KINDS, ParamKey
from ftrl.analysis.weights import Pair, TensorReader, open_pair

if TYPE_CHECKING:
    import torch

CHUNK = 1 << 22  # elements per chunk: 16 MiB of float32


@dataclass
class Totals:
    """Sums from which every metric of a group follows; they add, so groups can be merged."""

    numel: int = 0
    base_sq: float = 0.0
    delta_sq: float = 0.0
    delta_abs: float = 0.0

    def add(self, other: Totals) -> None:
        self.numel += other.numel
        self.base_sq += other.base_sq
        self.delta_sq += other.delta_sq
        self.delta_abs += other.delta_abs


@dataclass(frozen=True)
class ChangeRow:
    """One line of the table: a (layer, module) group and its three metrics; share is a fraction of 1."""

    layer: int | None
    module: str
    numel: int
    base_norm: float
    delta_norm: float
    relative_change: float
    mean_abs_change: float
    share: float


@dataclass
class ParamReport:
    """Totals per (layer, fine module kind) for one base/tuned pair."""

    groups: dict[ParamKey, Totals]
    n_layers: int

    @property
    def total_delta_sq(self) -> float:
        return sum(totals.delta_sq for totals in self.groups.values())

    def rows(self, coarse: bool = False) -> list[ChangeRow]:
        """Table rows, fine kinds (`mlp.down`) or coarse ones (`mlp`), embeddings first and the head last."""
        merged: dict[ParamKey, Totals] = defaultdict(Totals)
        for key, totals in self.groups.items():
            merged[ParamKey(key.layer, key.coarse) if coarse else key].add(totals)
        total = self.total_delta_sq
        return [_row(key, merged[key], total) for key in sorted(merged, key=_display_order)]


def compare(base: str | Path, tuned: str | Path) -> ParamReport:
    """Stream both checkpoints and total the update per (layer, module kind)."""
    return compare_pair(open_pair(base, tuned))


def compare_pair(pair: Pair) -> ParamReport:
    import torch

    groups: dict[ParamKey, Totals] = defaultdict(Totals)
    alias = pair.tuned.tied_head()
    keys = pair.tuned.keys()
    with torch.no_grad(), TensorReader(pair.base) as base, TensorReader(pair.tuned) as tuned:
        for name in pair.names:
            if name != alias:
                groups[keys[name]].add(tensor_totals(base.tensor(name), tuned.tensor(name)))
    return ParamReport(dict(groups), pair.tuned.n_layers)


def tensor_totals(base: torch.Tensor, tuned: torch.Tensor) -> Totals:
    """The sums for one tensor pair, chunk by chunk so a large embedding never exists three times in float32."""
    import torch

    flat_base, flat_tuned = base.reshape(-1), tuned.reshape(-1)
    totals = Totals(numel=flat_base.numel())
    for start in range(0, totals.numel, CHUNK):
        before = flat_base[start : start + CHUNK].to(torch.float32)
        delta = (flat_tuned[start : start + CHUNK].to(torch.float32) - before).to(torch.float64)
        totals.base_sq += float(before.to(torch.float64).square().sum())
        totals.delta_sq += float(delta.square().sum())
        totals.delta_abs += float(delta.abs().sum())
    return totals


def _row(key: ParamKey, totals: Totals, total_delta_sq: float) -> ChangeRow:
    base_norm, delta_norm = math.sqrt(totals.base_sq), math.sqrt(totals.delta_sq)
    return ChangeRow(
        layer=key.layer,
        module=key.kind,
        numel=totals.numel,
        base_norm=base_norm,
        delta_norm=delta_norm,
        relative_change=delta_norm / base_norm if base_norm else (math.inf if delta_norm else 0.0),
        mean_abs_change=totals.delta_abs / totals.numel if totals.numel else 0.0,
        share=totals.delta_sq / total_delta_sq if total_delta_sq else 0.0,
    )


def _display_order(key: ParamKey) -> tuple[float, int, int]:
    position = key.layer if key.layer is not None else (-1 if key.coarse == "embed" else math.inf)
    return position, COARSE_KINDS.index(key.coarse), KINDS.index(key.kind) if key.kind in KINDS else -1
