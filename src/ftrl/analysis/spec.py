"""SPEC strings that select parts of a model, e.g. `mlp@0-2`, `attn@all`, `mlp.down@[0,2],norm`.

Restore experiments ask "which tuned parameters carry the gain?", so users need a compact, checked way to name
"the MLPs of layers 0-2". Grammar (whitespace ignored, case-insensitive):

    spec     := item ("," item)*
    item     := module ["@" layers]            # no "@" means @all
    module   := all | layers | embed | attn | mlp | norm | head | other | a fine kind (attn.q, mlp.down, ...)
    layers   := all | range | "[" range ("," range)* "]"
    range    := N | A-B                        # inclusive, 0-based

Brackets are optional when a number cannot be read as a module: `mlp@0,2,attn@5` is `mlp@[0,2],attn@5`.

`layers` is a synonym of `all` that reads well with layer numbers (`layers@0-5`). `@all` also selects tensors
outside the decoder layers (embeddings, head, final norm); numbered layers never do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ftrl.analysis.names import COARSE_KINDS, GLOBAL_KINDS, KINDS, ParamKey

MODULES = ("all", "layers", *COARSE_KINDS, *(kind for kind in KINDS if "." in kind))
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class SpecError(ValueError):
    """A SPEC string that does not parse, or that does not fit the model it is applied to."""


@dataclass(frozen=True)
class Selector:
    """One `module@layers` item; `layers` None means every layer plus the tensors outside layers."""

    module: str
    layers: frozenset[int] | None

    def matches(self, key: ParamKey) -> bool:
        if self.module not in ("all", "layers", key.kind, key.coarse):
            return False
        return self.layers is None or key.layer in self.layers


@dataclass(frozen=True)
class Spec:
    """A parsed SPEC: a tensor is selected when any item matches it."""

    text: str
    selectors: tuple[Selector, ...]

    def matches(self, key: ParamKey) -> bool:
        return any(selector.matches(key) for selector in self.selectors)

    def check_layers(self, n_layers: int) -> None:
        """Refuse layer numbers the model does not have, rather than silently selecting nothing."""
        for selector in self.selectors:
            beyond = sorted(layer for layer in selector.layers or () if layer >= n_layers)
            if beyond:
                raise SpecError(
                    f"SPEC {self.text!r}: layer {beyond[0]} out of range; the model has layers 0-{n_layers - 1}"
                )

    def __str__(self) -> str:
        return self.text


def parse_spec(text: str) -> Spec:
    """Parse a SPEC string; `SpecError` says which item is wrong and how to write it."""
    compact = re.sub(r"\s+", "", text).lower()
    if not compact:
        raise SpecError("empty SPEC; e.g. 'mlp@0-2' or 'attn@all'")
    return Spec(compact, tuple(_parse_item(item, compact) for item in _fold_bare_layers(_split_items(compact))))


def _split_items(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise SpecError(f"SPEC {text!r}: unbalanced brackets")
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise SpecError(f"SPEC {text!r}: unbalanced brackets")
    return [*items, current]


def _fold_bare_layers(items: list[str]) -> list[str]:
    """`mlp@0,2` means `mlp@[0,2]`: a bare number after a numbered item extends its layer list."""
    folded: list[str] = []
    for item in items:
        module, _, layers = folded[-1].partition("@") if folded else ("", "", "")
        if _RANGE.match(item) and _RANGE.match(layers.strip("[]").split(",")[-1]):
            folded[-1] = f"{module}@[{layers.strip('[]')},{item}]"
        else:
            folded.append(item)
    return folded


def _parse_item(item: str, text: str) -> Selector:
    if not item:
        raise SpecError(f"SPEC {text!r}: empty item (two commas in a row, or a trailing comma?)")
    module, _, layers = item.partition("@")
    if module not in MODULES:
        hint = "; to list layers write e.g. mlp@[0,2]" if _RANGE.match(module) else ""
        raise SpecError(f"SPEC {text!r}: unknown module {module!r}; choose from {', '.join(MODULES)}{hint}")
    if "@" in item and not layers:
        raise SpecError(f"SPEC {text!r}: nothing after '@' in {item!r}; e.g. {module}@all or {module}@0-2")
    selected = _parse_layers(layers or "all", text)
    if selected is not None and (module in GLOBAL_KINDS or module in ("embed", "head")):
        raise SpecError(f"SPEC {text!r}: {module!r} is outside the decoder layers; write {module!r} or '{module}@all'")
    return Selector(module, selected)


def _parse_layers(layers: str, text: str) -> frozenset[int] | None:
    if layers == "all":
        return None
    bracketed = layers.startswith("[") and layers.endswith("]")
    parts = layers[1:-1].split(",") if bracketed else [layers]
    selected: set[int] = set()
    for part in parts:
        match = _RANGE.match(part)
        if match is None:
            raise SpecError(f"SPEC {text!r}: bad layers {layers!r}; use all, N, A-B or [0,2,5-7]")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if last < first:
            raise SpecError(f"SPEC {text!r}: range {part!r} runs backwards; write {last}-{first}")
        selected.update(range(first, last + 1))
    return frozenset(selected)
