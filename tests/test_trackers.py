"""`--report-to`: one adapter (MetricsLog) writes metrics.jsonl and feeds the trackers; values are read back from
tensorboard's event files and mlflow's local file store."""

from __future__ import annotations

import json

import pytest

from ftrl.trackers import MetricsLog, numbers, parse_report_to

ROWS = [
    {"step": 1, "epoch": 0, "reward_mean": 0.25, "kl": 0.0, "reward_no_call": None, "note": "x"},
    {"step": 2, "epoch": 0, "reward_mean": 0.5, "kl": 0.01, "reward_no_call": 0.1, "note": "y"},
]


def test_parse_report_to():
    assert parse_report_to(" tensorboard, mlflow ,tensorboard") == ["tensorboard", "mlflow"]
    assert parse_report_to("none") == parse_report_to("") == []
    with pytest.raises(ValueError, match="unknown tracker 'comet'"):
        parse_report_to("tensorboard,comet")
    assert numbers({"step": 3, "a": 1, "b": None, "c": True, "d": float("nan"), "e": "x"}) == {"a": 1.0}


def test_metrics_log_without_trackers_writes_only_jsonl(tmp_path):
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        for row in ROWS:
            log.write(row)
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == ROWS
    assert not (tmp_path / "trackers").exists()


def test_tensorboard_values_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("torch")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLog(tmp_path / "metrics.jsonl", "tensorboard", run_name="run1", config={"lr": 1e-5}) as log:
        for row in ROWS:
            log.write(row)
    events = EventAccumulator(str(tmp_path / "trackers" / "tensorboard" / "run1"))
    events.Reload()
    rewards = [(event.step, event.value) for event in events.Scalars("reward_mean")]
    assert rewards == [(1, 0.25), (2, 0.5)]
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("reward_no_call")] == [(2, 0.1)]  # None: no point
    assert "note" not in events.Tags()["scalars"]


def test_mlflow_local_file_store_values_read_back(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with MetricsLog(tmp_path / "metrics.jsonl", "mlflow", run_name="run1", config={"lr": 1e-5}) as log:
        for row in ROWS:
            log.write(row)
    client = MlflowClient(tracking_uri=(tmp_path / "trackers" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("ftrl")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run1" and run.info.status == "FINISHED" and run.data.params["lr"] == "1e-05"
    history = client.get_metric_history(run.info.run_id, "kl")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.0), (2, 0.01)]


def test_a_missing_tracker_package_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match=r'pip install "ftrl\[wandb\]"'), MetricsLog(tmp_path / "m.jsonl", "wandb"):
        pass
