"""Analysis layer: parameter-change arithmetic, name parsing, SPECs, restore and the sweep, on a tiny Llama.

The tiny model has 3 layers, hidden 16, intermediate 32, 2 heads of dim 8 with 1 key/value head, vocab 64:
q_proj/o_proj 16x16 = 256, k_proj/v_proj 8x16 = 128, gate/up 32x16 = 512, down 16x32 = 512, norms 16,
embedding 64x16 = 1024. Tuned checkpoints are the base with hand-set changes, so every expected value below is
worked out from those numbers.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file

from ftrl.analysis import (
    SpecError,
    WeightsError,
    compare,
    parse_name,
    parse_spec,
    restore,
    run_sweep,
)
from ftrl.analysis.names import ParamKey
from ftrl.analysis.param_report import analyze_params
from ftrl.analysis.sweep import thirds

DOWN_1 = "model.layers.1.mlp.down_proj.weight"
Q_0 = "model.layers.0.self_attn.q_proj.weight"
EMBED = "model.embed_tokens.weight"


def _config(**overrides: object) -> transformers.LlamaConfig:
    settings = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 64,
        "tie_word_embeddings": True,
    }
    return transformers.LlamaConfig(**{**settings, **overrides})


def _save_model(folder: Path, **overrides: object) -> Path:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_config(**overrides))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_model(tmp_path_factory.mktemp("base"))


def _variant(base: Path, folder: Path, change: Callable[[dict], None]) -> Path:
    """A copy of `base` (config and all) whose tensors `change` edits in place."""
    shutil.copytree(base, folder)
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _add(values: dict[str, float]) -> Callable[[dict], None]:
    def change(tensors: dict) -> None:
        for name, amount in values.items():
            tensors[name] += amount

    return change


def _row(report, layer, module, coarse=False):
    return next(row for row in report.rows(coarse) if (row.layer, row.module) == (layer, module))


# --- metrics -----------------------------------------------------------------------------------------------


def test_single_change_metrics(base: Path, tmp_path: Path) -> None:
    tuned = _variant(base, tmp_path / "tuned", _add({DOWN_1: 0.1}))
    report = compare(base, tuned)
    weight = load_file(base / "model.safetensors")[DOWN_1]
    row = _row(report, 1, "mlp.down")
    # ||delta|| = 0.1 * sqrt(512); relative = that / ||W_base||; every element moved by 0.1; only change -> 100%
    assert row.numel == 512
    assert row.relative_change == pytest.approx(0.1 * math.sqrt(512) / float(weight.norm()), rel=1e-5)
    assert row.mean_abs_change == pytest.approx(0.1, rel=1e-5)
    assert row.share == pytest.approx(1.0)
    assert all(other.share == 0 and other.relative_change == 0 for other in report.rows() if other != row)
    # the layer-1 MLP family: 512 changed elements of 512 + 512 + 512 -> mean |delta| = 0.1 / 3
    family = _row(report, 1, "mlp", coarse=True)
    assert family.numel == 1536 and family.mean_abs_change == pytest.approx(0.1 / 3, rel=1e-5)


def test_shares_split_by_squared_norm(base: Path, tmp_path: Path) -> None:
    def change(tensors: dict) -> None:
        tensors[Q_0] += 0.2  # 256 elements: ||delta||^2 = 256 * 0.04 = 10.24
        up = tensors["model.layers.2.mlp.up_proj.weight"]  # 512 elements, half +0.1, half -0.1: 512 * 0.01 = 5.12
        up[:16] += 0.1
        up[16:] -= 0.1

    report = compare(base, _variant(base, tmp_path / "tuned", change))
    # total 15.36: q gets 10.24 / 15.36 = 2/3, up 5.12 / 15.36 = 1/3
    assert _row(report, 0, "attn.q").share == pytest.approx(2 / 3, rel=1e-5)
    assert _row(report, 2, "mlp.up").share == pytest.approx(1 / 3, rel=1e-5)
    assert _row(report, 2, "mlp.up").mean_abs_change == pytest.approx(0.1, rel=1e-5)  # signs do not cancel
    assert report.total_delta_sq == pytest.approx(15.36, rel=1e-5)
    # family rows merge sums: layer 0 attention = q + k + v + o = 256 + 128 + 128 + 256 elements, 51.2 moved
    assert _row(report, 0, "attn", coarse=True).mean_abs_change == pytest.approx(256 * 0.2 / 768, rel=1e-5)
    assert sum(row.share for row in report.rows()) == pytest.approx(1.0)


def test_hand_set_base_gives_exact_relative_change(base: Path, tmp_path: Path) -> None:
    def constant(value: float) -> Callable[[dict], None]:
        return lambda tensors: tensors[DOWN_1].fill_(value)

    flat = _variant(base, tmp_path / "flat", constant(0.5))
    moved = _variant(flat, tmp_path / "moved", constant(0.625))
    # ||delta|| / ||W|| = 0.125 * sqrt(512) / (0.5 * sqrt(512)) = 0.25
    assert _row(compare(flat, moved), 1, "mlp.down").relative_change == pytest.approx(0.25)


def test_tied_embedding_counted_once(base: Path, tmp_path: Path) -> None:
    def store_head_too(tensors: dict) -> None:  # some checkpoints store the tied head as a copy
        tensors["lm_head.weight"] = tensors[EMBED].clone()

    def move(tensors: dict) -> None:
        tensors[EMBED] += 0.1  # 1024 * 0.01 = 10.24, once
        tensors["lm_head.weight"] += 0.1
        tensors[Q_0] += 0.2  # 256 * 0.04 = 10.24

    stored = _variant(base, tmp_path / "base_with_head", store_head_too)
    report = compare(stored, _variant(stored, tmp_path / "tuned", move))
    assert {row.module for row in report.rows() if row.layer is None} == {"embed", "norm.final"}
    assert _row(report, None, "embed").share == pytest.approx(0.5, rel=1e-5)  # 10.24 / 20.48, not 20.48 / 30.72
    assert _row(report, None, "embed").numel == 1024


def test_untied_head_is_its_own_group(tmp_path: Path) -> None:
    base = _save_model(tmp_path / "base", tie_word_embeddings=False)
    report = compare(base, _variant(base, tmp_path / "tuned", _add({"lm_head.weight": 0.1})))
    assert _row(report, None, "head").share == pytest.approx(1.0) and _row(report, None, "embed").share == 0


def test_sharded_checkpoint_matches_single_file(base: Path, tmp_path: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    tuned = _variant(base, tmp_path / "tuned", _add({DOWN_1: 0.1}))
    assert compare(tmp_path / "sharded", tuned).rows() == compare(base, tuned).rows()


def test_report_files(base: Path, tmp_path: Path) -> None:
    tuned = _variant(base, tmp_path / "tuned", _add({DOWN_1: 0.1}))
    analyze_params(base, tuned, tmp_path / "out")
    with open(tmp_path / "out" / "params.csv", encoding="utf-8") as handle:
        fine = list(csv.DictReader(handle))
    with open(tmp_path / "out" / "params_by_family.csv", encoding="utf-8") as handle:
        coarse = list(csv.DictReader(handle))
    assert len(fine) == 1 + 3 * 9 + 1  # embed, 9 kinds in each of 3 layers, final norm
    assert len(coarse) == 1 + 3 * 3 + 1  # embed, attn/mlp/norm per layer, final norm
    assert (fine[0]["layer"], fine[0]["module"]) == ("", "embed")
    down = next(row for row in fine if (row["layer"], row["module"]) == ("1", "mlp.down"))
    assert float(down["share"]) == pytest.approx(1.0) and float(down["mean_abs_change"]) == pytest.approx(0.1, rel=1e-5)
    assert "| 1 | mlp | 100.00% |" in (tmp_path / "out" / "params.md").read_text(encoding="utf-8")
    for figure in ("heatmap.png", "layers.png"):
        assert (tmp_path / "out" / figure).read_bytes()[:4] == b"\x89PNG"


# --- refusing mismatched checkpoints --------------------------------------------------------------------


def test_different_layer_count_refused(base: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="layer count is 3 in base, 2 in tuned"):
        compare(base, _save_model(tmp_path / "two", num_hidden_layers=2))


def test_different_hidden_size_refused(base: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="hidden size"):
        compare(base, _save_model(tmp_path / "wide", hidden_size=32, head_dim=16))


def test_missing_tensor_and_shape_mismatch_named(base: Path, tmp_path: Path) -> None:
    missing = _variant(base, tmp_path / "missing", lambda tensors: tensors.pop(DOWN_1))
    with pytest.raises(WeightsError, match=f"missing in tuned: {DOWN_1}"):
        compare(base, missing)

    def reshape(tensors: dict) -> None:
        tensors[DOWN_1] = torch.zeros(16, 16)

    with pytest.raises(WeightsError, match=rf"'{DOWN_1}' has shape \(16, 32\) in base, \(16, 16\) in tuned"):
        compare(base, _variant(base, tmp_path / "reshaped", reshape))


def test_adapter_only_directory_explained(base: Path, tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match="LoRA adapter; merge it"):
        compare(base, tmp_path / "adapter")


# --- names and SPECs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layer", "kind"),
    [
        ("model.layers.12.self_attn.q_proj.weight", 12, "attn.q"),
        ("model.layers.0.mlp.gate_proj.weight", 0, "mlp.gate"),
        ("model.layers.0.post_attention_layernorm.weight", 0, "norm.post_attention"),
        ("model.norm.weight", None, "norm.final"),
        ("transformer.h.3.attn.c_attn.bias", 3, "attn.qkv"),
        ("transformer.h.3.attn.c_proj.weight", 3, "attn.o"),
        ("transformer.h.3.mlp.c_fc.weight", 3, "mlp.up"),
        ("transformer.h.3.mlp.c_proj.weight", 3, "mlp.down"),
        ("transformer.h.3.ln_1.weight", 3, "norm.input"),
        ("transformer.wte.weight", None, "embed"),
        ("transformer.ln_f.bias", None, "norm.final"),
        ("gpt_neox.layers.1.mlp.dense_4h_to_h.weight", 1, "mlp.down"),
        ("model.layers.1.block_sparse_moe.experts.7.w1.weight", 1, "mlp.gate"),
        ("lm_head.weight", None, "head"),
        ("model.visual.blocks.0.attn.qkv.weight", None, "other"),
        ("something.else", None, "other"),
    ],
)
def test_parse_name(name: str, layer: int | None, kind: str) -> None:
    assert parse_name(name) == ParamKey(layer, kind)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mlp@0-2", [("mlp", {0, 1, 2})]),
        ("attn@all", [("attn", None)]),
        ("layers@0-5", [("layers", {0, 1, 2, 3, 4, 5})]),
        ("mlp.down@[0,2],norm", [("mlp.down", {0, 2}), ("norm", None)]),
        ("mlp@0,2-3,attn@5", [("mlp", {0, 2, 3}), ("attn", {5})]),
        (" MLP @ 1 ", [("mlp", {1})]),
        ("embed", [("embed", None)]),
    ],
)
def test_parse_spec(text: str, expected: list) -> None:
    selectors = parse_spec(text).selectors
    assert [(item.module, None if item.layers is None else set(item.layers)) for item in selectors] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SPEC"),
        ("mlpp@1", "unknown module 'mlpp'"),
        ("mlp@", "nothing after '@'"),
        ("mlp@3-1", "runs backwards"),
        ("mlp@[0,2", "unbalanced brackets"),
        ("mlp@x", "bad layers 'x'"),
        ("mlp,,attn", "empty item"),
        ("embed@2", "outside the decoder layers"),
    ],
)
def test_parse_spec_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_spec_selection_rules() -> None:
    spec = parse_spec("mlp@0-1,norm")
    assert spec.matches(ParamKey(1, "mlp.down")) and not spec.matches(ParamKey(2, "mlp.down"))
    assert spec.matches(ParamKey(None, "norm.final"))  # @all includes tensors outside layers
    assert not parse_spec("layers@0-2").matches(ParamKey(None, "embed"))  # numbered layers never do
    with pytest.raises(SpecError, match="layer 3 out of range; the model has layers 0-2"):
        parse_spec("attn@2-3").check_layers(3)


# --- restore ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shifted(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tuned = base + 1 in every tensor, so each output tensor shows which side it came from."""

    def shift(tensors: dict) -> None:
        for tensor in tensors.values():
            tensor += 1.0

    folder = _variant(base, tmp_path_factory.mktemp("shifted") / "tuned", shift)
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 64}', encoding="utf-8")
    return folder


def _expect_sources(out: Path, base: Path, tuned: Path, from_tuned: Callable[[str], bool]) -> None:
    written, old, new = (load_file(folder / "model.safetensors") for folder in (out, base, tuned))
    assert written.keys() == new.keys()
    for name, tensor in written.items():
        assert torch.equal(tensor, new[name] if from_tuned(name) else old[name]), name


def test_restore_keep(base: Path, shifted: Path, tmp_path: Path) -> None:
    result = restore(base, shifted, "mlp@0-1", tmp_path / "out")
    _expect_sources(tmp_path / "out", base, shifted, lambda name: ".mlp." in name and name.split(".")[2] in ("0", "1"))
    assert len(result.from_tuned) == 6 and len(result.from_base) == 29 - 6  # 3 MLP tensors x 2 layers
    assert json.loads((tmp_path / "out" / "ftrl_restore.json").read_text())["mode"] == "keep"
    for copied in ("config.json", "generation_config.json", "tokenizer_config.json"):
        assert (tmp_path / "out" / copied).read_bytes() == (shifted / copied).read_bytes()
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tuned_down = load_file(shifted / "model.safetensors")["model.layers.0.mlp.down_proj.weight"]
    base_q = load_file(base / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(model.model.layers[0].mlp.down_proj.weight, tuned_down)
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, base_q)


def test_restore_revert_fine_kind(base: Path, shifted: Path, tmp_path: Path) -> None:
    restore(base, shifted, "attn.q@[0,2],embed", tmp_path / "out", revert=True)
    reverted = {"model.layers.0.self_attn.q_proj.weight", "model.layers.2.self_attn.q_proj.weight", EMBED}
    _expect_sources(tmp_path / "out", base, shifted, lambda name: name not in reverted)
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")


def test_restore_sharded_mirrors_layout(base: Path, shifted: Path, tmp_path: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(shifted)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    restore(base, tmp_path / "sharded", "layers@2", tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    written = {}
    for shard in set(index["weight_map"].values()):
        written |= load_file(tmp_path / "out" / shard)
    old, new = load_file(base / "model.safetensors"), load_file(shifted / "model.safetensors")
    for name, tensor in written.items():
        assert torch.equal(tensor, new[name] if name.startswith("model.layers.2.") else old[name]), name


def test_restore_refusals(base: Path, shifted: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="out of range"):
        restore(base, shifted, "mlp@5", tmp_path / "a")
    with pytest.raises(SpecError, match="selects no tensor.*tied"):
        restore(base, shifted, "head", tmp_path / "b")
    (tmp_path / "exists").mkdir()
    with pytest.raises(WeightsError, match="already exists"):
        restore(base, shifted, "mlp", tmp_path / "exists")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- sweep -------------------------------------------------------------------------------------------------


def test_thirds() -> None:
    assert thirds(3) == [(0, 0), (1, 1), (2, 2)]
    assert thirds(10) == [(0, 3), (4, 6), (7, 9)]  # 4 + 3 + 3
    assert thirds(28) == [(0, 9), (10, 18), (19, 27)]  # 10 + 9 + 9
    with pytest.raises(ValueError, match="at least 3 layers"):
        thirds(2)


def test_sweep_orchestration(base: Path, shifted: Path, tmp_path: Path) -> None:
    reference = load_file(base / "model.safetensors")
    calls: list[str] = []

    def fake_evaluator(model: Path, envs: Path, out: Path, limit: int | None) -> None:
        """Scores 100 x the fraction of the 29 tensors that differ from base, so each point's score is known."""
        calls.append(out.name)
        assert envs == tmp_path / "envs.jsonl" and limit == 4
        tensors = load_file(model / "model.safetensors")
        moved = sum(not torch.equal(tensors[name], reference[name]) for name in reference)
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"mean": {"solve_f1": 100 * moved / len(reference)}}))

    sweep = tmp_path / "sweep"
    rows = run_sweep(base, shifted, tmp_path / "envs.jsonl", sweep, limit=4, evaluator=fake_evaluator)
    labels = ["base", "tuned", "mlp@0", "attn@0", "mlp@1", "attn@1", "mlp@2", "attn@2"]
    assert calls == labels
    # base moves 0 of 29 tensors, tuned 29, an MLP third 3 (gate/up/down), an attention third 4 (q/k/v/o)
    expected = [0.0, 100.0] + [100 * 3 / 29, 100 * 4 / 29] * 3
    assert [row.label for row in rows] == labels
    assert [row.solve_f1 for row in rows] == pytest.approx(expected)
    assert list((sweep / "models").iterdir()) == []  # restored models are removed after evaluation
    with open(sweep / "sweep.csv", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [row["label"] for row in table] == labels
    # recovery = (F1 - 0) / (100 - 0): an MLP third recovers 3/29 of the gap
    assert float(table[2]["recovery"]) == pytest.approx(3 / 29)
    assert (sweep / "sweep.png").read_bytes()[:4] == b"\x89PNG" and (sweep / "sweep.md").exists()

    calls.clear()
    shutil.rmtree(sweep / "runs" / "attn@1")
    assert [
        row.solve_f1
        for row in run_sweep(base, shifted, tmp_path / "envs.jsonl", sweep, limit=4, evaluator=fake_evaluator)
    ] == pytest.approx(expected)
    assert calls == ["attn@1"]  # every other point was resumed from its summary


def test_cli_restore_reports_bad_spec(base: Path, shifted: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ftrl.cli import app

    runner = CliRunner()
    bad = runner.invoke(
        app,
        [
            "analyze",
            "restore",
            "--base",
            str(base),
            "--tuned",
            str(shifted),
            "--keep",
            "mlp@9",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert bad.exit_code == 2 and "out of range" in bad.output
    both = runner.invoke(
        app,
        [
            "analyze",
            "restore",
            "--base",
            str(base),
            "--tuned",
            str(shifted),
            "--keep",
            "mlp",
            "--revert",
            "attn",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert both.exit_code == 2
    good = runner.invoke(
        app, ["analyze", "params", "--base", str(base), "--tuned", str(shifted), "--out", str(tmp_path / "p")]
    )
    assert good.exit_code == 0 and (tmp_path / "p" / "params.csv").exists()
