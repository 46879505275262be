"""Library plots draw with matplotlib's object API: a caller's pyplot backend and figures are left as they were
(the four plotting functions of construction, eval, train and the loop used to switch it to Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from ftrl.construction.stats import plot_stats, stats_for_path
from ftrl.env import Environment, write_envs
from ftrl.eval.compare import plot as plot_report
from ftrl.recipes.loop import plot_rounds
from ftrl.train.plot import plot_runs

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def caller_backend():
    """The caller chose a non-Agg backend and has a pyplot figure open."""
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    figure = plt.figure()
    yield "pdf", plt.get_fignums()
    plt.close(figure)
    matplotlib.use(before)


def summary(f1: float) -> dict:
    stats = {"solve_precision": f1, "solve_rate": f1, "solve_f1": f1}
    return {"scenarios": {"single_hop": stats}, "mean": stats}


def test_every_library_plot_leaves_the_callers_backend(caller_backend, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    backend, figures = caller_backend
    env = Environment(
        [{"role": "user", "content": "q"}],
        [{"type": "function", "function": {"name": "t", "parameters": {"type": "object", "properties": {}}}}],
        {"t": "def t():\n    return 1\n"},
        {"t": ["1"]},
        answer="1",
        data_source="self/single_hop",
    )
    write_envs(tmp_path / "envs.jsonl", [env])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.7}\n')
    outputs = [tmp_path / name for name in ("stats.png", "report.png", "rounds.png", "runs.png")]
    plot_stats(stats_for_path(tmp_path / "envs.jsonl"), outputs[0])
    plot_report({"base": summary(10.0), "tuned": summary(20.0)}, outputs[1])
    plot_rounds([{"round": 0, "label": "start", "solve_p": 1, "solve_r": 2, "solve_f1": 3}], outputs[2])
    plot_runs([tmp_path / "run"], outputs[3])
    for path in outputs:
        assert path.read_bytes().startswith(PNG), path
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == figures  # no pyplot figure opened or closed behind the caller's back
