"""Map checkpoint tensor names to (layer, module kind) across common decoder architectures.

The analysis groups parameters the way the paper talks about them ("layer 1's MLP"), so every tensor name must
become a layer index (or none, for embeddings, head and final norm) and a module kind such as `mlp.down`. Names
follow Llama/Qwen2/Mistral (`model.layers.3.mlp.down_proj.weight`), GPT-2 (`transformer.h.3.mlp.c_proj.weight`),
GPT-NeoX, Falcon, OPT, Phi-3 and Mixtral conventions; anything unrecognised (a vision tower, a buffer) becomes
kind `other`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Fine module kinds in display order; the part before the dot is the coarse kind (attn, mlp, norm, ...).
KINDS = (
    "embed",
    "embed.pos",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.qkv",
    "attn.o",
    "attn.other",
    "mlp.gate",
    "mlp.up",
    "mlp.gate_up",
    "mlp.down",
    "mlp.router",
    "mlp.other",
    "norm.input",
    "norm.post_attention",
    "norm.other",
    "norm.final",
    "head",
    "other",
)
GLOBAL_KINDS = ("embed", "embed.pos", "norm.final", "head")  # never inside a decoder layer
COARSE_KINDS = tuple(dict.fromkeys(kind.split(".")[0] for kind in KINDS))

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.(.+)$")
_SUFFIX = re.compile(r"\.(weight|bias|scale|g_idx|qweight|qzeros|scales)$")
_ATTN_PARENTS = {"self_attn", "attn", "attention", "self_attention", "mixer"}
_MLP_PARENTS = {"mlp", "feed_forward", "ffn", "block_sparse_moe", "moe", "experts", "shared_expert"}
_ATTN_LEAVES = {
    "attn.q": {"q_proj", "query", "q", "wq"},
    "attn.k": {"k_proj", "key", "k", "wk"},
    "attn.v": {"v_proj", "value", "v", "wv"},
    "attn.qkv": {"c_attn", "qkv_proj", "query_key_value", "wqkv", "w_pack"},
    "attn.o": {"o_proj", "out_proj", "dense", "c_proj", "o", "wo"},
}
_MLP_LEAVES = {
    "mlp.gate": {"gate_proj", "w1", "wi_0"},
    "mlp.up": {"up_proj", "w3", "c_fc", "fc_in", "fc1", "dense_h_to_4h", "wi_1", "wi"},
    "mlp.gate_up": {"gate_up_proj"},
    "mlp.down": {"down_proj", "w2", "c_proj", "fc_out", "fc2", "dense_4h_to_h", "wo"},
    "mlp.router": {"gate", "router", "shared_expert_gate"},
}
_NORM_LEAVES = {
    "norm.input": {"input_layernorm", "ln_1", "self_attn_layer_norm", "attention_norm", "ln_attn"},
    "norm.post_attention": {"post_attention_layernorm", "ln_2", "final_layer_norm", "ffn_norm", "ln_mlp"},
}
_EMBED = {"embed_tokens", "wte", "word_embeddings", "embed_in", "tok_embeddings"}
_POS_EMBED = {"wpe", "embed_positions", "position_embeddings"}
_HEAD = {"lm_head", "embed_out", "output"}
_FINAL_NORM = {"norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f"}


@dataclass(frozen=True, order=True)
class ParamKey:
    """Where a tensor sits: its decoder layer (None for embeddings, head, final norm) and its module kind."""

    layer: int | None
    kind: str

    @property
    def coarse(self) -> str:
        """The module family (`attn`, `mlp`, `norm`, `embed`, `head`, `other`) that SPECs and line plots use."""
        return self.kind.split(".")[0]


def parse_name(name: str) -> ParamKey:
    """Classify one tensor name; unknown names get kind `other` rather than an error, so no tensor is lost."""
    stem = _SUFFIX.sub("", name)
    match = _LAYER.search(stem)
    if match is None or "vis" in stem[: match.start()].lower():  # vision towers are not the decoder's layers
        return ParamKey(None, _global_kind(stem.split(".")) if match is None else "other")
    return ParamKey(int(match.group(1)), _layer_kind(match.group(2).split(".")))


def _layer_kind(parts: list[str]) -> str:
    leaf, parents = parts[-1].lower(), {part.lower() for part in parts[:-1]}
    if "norm" in leaf or leaf.startswith("ln"):
        kind = _lookup(_NORM_LEAVES, leaf)
        return kind or "norm.other"
    if parents & _ATTN_PARENTS:
        return _lookup(_ATTN_LEAVES, leaf) or "attn.other"
    if parents & _MLP_PARENTS:
        return _lookup(_MLP_LEAVES, leaf) or "mlp.other"
    if leaf in {"fc1", "fc2"}:  # OPT keeps its MLP directly in the layer
        return _lookup(_MLP_LEAVES, leaf) or "other"
    return "other"


def _global_kind(parts: list[str]) -> str:
    leaf = parts[-1].lower()
    for kind, names in (("embed", _EMBED), ("embed.pos", _POS_EMBED), ("head", _HEAD), ("norm.final", _FINAL_NORM)):
        if leaf in names:
            return kind
    return "other"


def _lookup(table: dict[str, set[str]], leaf: str) -> str | None:
    return next((kind for kind, names in table.items() if leaf in names), None)
