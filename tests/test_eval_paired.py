"""Paired bootstrap of two evaluations over the same environments (`ftrl.eval.paired`)."""

import json

import numpy as np
import pytest

from ftrl.eval.paired import paired_difference, pairwise


def write_run(folder, scores):
    """An evaluation folder whose episodes have these (scenario, Solve-F1) values, ids 0..n-1."""
    folder.mkdir(parents=True)
    rows = [
        {
            "episode_id": str(i),
            "data_source": f"self/{scenario}",
            "metrics": {"solve_f1": f1, "solve_precision": f1, "solve_rate": f1},
        }
        for i, (scenario, f1) in enumerate(scores)
    ]
    (folder / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_constant_shift_gives_a_zero_width_interval_at_the_shift(tmp_path):
    base = [("single_hop", 0.2), ("single_hop", 0.6), ("multi_hop", 0.1), ("multi_hop", 0.3)]
    a = write_run(tmp_path / "a", base)
    b = write_run(tmp_path / "b", [(s, f + 0.1) for s, f in base])
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(10.0) and d.low == pytest.approx(10.0) and d.high == pytest.approx(10.0)
    assert d.excludes_zero and d.n == 4


def test_mean_is_over_scenarios_and_interval_covers_it(tmp_path):
    # single_hop: +1 on one of 4 envs; multi_hop (2 envs): +0.5 each -> scenario means 0.25 and 0.5
    a = write_run(tmp_path / "a", [("single_hop", 0.0)] * 4 + [("multi_hop", 0.0)] * 2)
    b = write_run(tmp_path / "b", [("single_hop", 1.0)] + [("single_hop", 0.0)] * 3 + [("multi_hop", 0.5)] * 2)
    d = paired_difference(a, b, seed=3)
    assert d.mean == pytest.approx(100 * (0.25 + 0.5) / 2)
    assert d.low < d.mean < d.high
    assert d.low == pytest.approx(25.0)  # single_hop resamples with no +1 at all: (0 + 50) / 2
    assert paired_difference(a, b, seed=3) == d  # fixed seed: the same interval every time


def test_noise_without_effect_includes_zero(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(size=48)
    a = write_run(tmp_path / "a", [("single_hop", v) for v in values])
    b = write_run(tmp_path / "b", [("single_hop", v) for v in rng.permutation(values)])
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.0, abs=1e-9) and d.low < 0 < d.high and not d.excludes_zero


def test_different_environments_are_refused(tmp_path):
    a = write_run(tmp_path / "a", [("single_hop", 0.1)] * 3)
    b = write_run(tmp_path / "b", [("single_hop", 0.1)] * 2)
    with pytest.raises(ValueError, match="not over the same environments"):
        paired_difference(a, b)
    with pytest.raises(ValueError, match="episodes.jsonl: not found"):
        paired_difference(a, tmp_path / "missing")


def test_pairwise_orders_pairs_as_given(tmp_path):
    runs = {
        name: write_run(tmp_path / name, [("single_hop", f)] * 2)
        for name, f in (("base", 0.0), ("sft", 0.5), ("rl", 0.7))
    }
    pairs = pairwise(runs)
    assert [(d.a, d.b) for d in pairs] == [("base", "sft"), ("base", "rl"), ("sft", "rl")]
    assert [round(d.mean, 6) for d in pairs] == [50.0, 70.0, 20.0]


def test_pooled_difference_is_the_mean_of_the_seeds_and_resamples_within_each(tmp_path):
    from ftrl.eval.paired import pooled_difference

    # seed 0: +10 everywhere (no spread); seed 1: +0 or +40 in single_hop, +20 in multi_hop -> mean (20 + 20) / 2
    a0 = write_run(tmp_path / "s0a", [("single_hop", 0.2), ("multi_hop", 0.3)] * 2)
    b0 = write_run(tmp_path / "s0b", [("single_hop", 0.3), ("multi_hop", 0.4)] * 2)
    a1 = write_run(tmp_path / "s1a", [("single_hop", 0.0), ("single_hop", 0.0), ("multi_hop", 0.0)])
    b1 = write_run(tmp_path / "s1b", [("single_hop", 0.0), ("single_hop", 0.4), ("multi_hop", 0.2)])
    per_seed, pooled = pooled_difference({"s0": (a0, b0), "s1": (a1, b1)}, seed=1, labels=("sft", "rl"))
    assert [d.mean for d in per_seed] == [pytest.approx(10.0), pytest.approx(20.0)]
    assert pooled.mean == pytest.approx(15.0) and pooled.n == 7 and pooled.b == "pooled: rl"
    # only seed 1's single_hop varies (0 or 40 per draw of 2): pooled = (10 + (x + 20) / 2) / 2, x in [0, 40]
    assert pooled.low >= 10.0 - 1e-9 and pooled.high <= 20.0 + 1e-9 and pooled.low < pooled.mean < pooled.high
    with pytest.raises(ValueError, match="no runs"):
        pooled_difference({})


def test_report_seeds_pools_loop_folders(tmp_path):
    from typer.testing import CliRunner

    from ftrl.cli import app

    for name, shift in (("s0", 0.1), ("s1", 0.3)):
        run = tmp_path / name
        write_run(run / "warm_start" / "eval", [("single_hop", 0.2), ("multi_hop", 0.1)])
        write_run(run / "round_2" / "eval", [("single_hop", 0.2 + shift), ("multi_hop", 0.1 + shift)])
        state = {"rounds": [{"round": 0}, {"round": 1}, {"round": 2, "solve_f1": 1.0}], "warm_start": {"round": 0}}
        (run / "loop_state.json").write_text(json.dumps(state))
    result = CliRunner().invoke(
        app, ["report", "--seeds", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    pooled = json.loads((tmp_path / "r" / "pooled.json").read_text())
    assert [round(d["mean"], 6) for d in pooled] == [10.0, 30.0, 20.0]
    table = (tmp_path / "r" / "report.md").read_text()
    assert "| s0 | +10.0 |" in table and "| pooled | +20.0 |" in table
    narrow = CliRunner().invoke(
        app,
        ["report", "--seeds", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "r2")],
        env={"COLUMNS": "80"},
    )
    assert "+20.0" in narrow.output  # the difference itself survives an 80-column terminal
    bad = CliRunner().invoke(app, ["report", "--seeds", str(tmp_path / "missing")])
    assert bad.exit_code != 0 and "not found" in bad.output and "Traceback" not in bad.output
