"""Experiment trackers, opt-in: `--report-to tensorboard,wandb,mlflow,trackio` (TRL's `report_to`).

One adapter, `MetricsLog`, is what training writes its per-step metrics through: it appends the row to the run's
`metrics.jsonl` (always) and sends its numbers to every tracker asked for, so no call site knows which trackers
exist. Each tracker is an optional extra (`pip install "ftrl[tensorboard]"`...), imported only when asked for,
and runs without a server or an account by default:

- tensorboard: event files in `OUT/trackers/tensorboard` (`tensorboard --logdir OUT/trackers`);
- wandb: offline mode in `OUT/trackers/wandb` unless `WANDB_MODE` says otherwise (`wandb sync` uploads later);
- mlflow: a local file store `OUT/trackers/mlruns` unless `MLFLOW_TRACKING_URI` names another
  (`MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri OUT/trackers/mlruns`);
- trackio: its local database (trackio's default; `trackio show`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ftrl.jsonl import JsonlAppender

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
#: Folder under a run's output where trackers keep their files.
TRACKERS_DIR = "trackers"


class Tracker(Protocol):
    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def parse_report_to(value: str | Sequence[str] | None) -> list[str]:
    """`"tensorboard, mlflow"` -> `["tensorboard", "mlflow"]`; `none` or empty -> `[]`; unknown names: an error."""
    if value is None:
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    wanted = [name.strip().lower() for name in names if name.strip() and name.strip().lower() != "none"]
    unknown = [name for name in wanted if name not in TRACKERS]
    if unknown:
        raise ValueError(f"unknown tracker {unknown[0]!r} in --report-to; known: {', '.join(TRACKERS)}")
    return list(dict.fromkeys(wanted))


def _missing(name: str) -> ImportError:
    return ImportError(f'--report-to {name}: the {name} package is not installed (pip install "ftrl[{name}]")')


class TensorBoardTracker:
    def __init__(self, folder: Path, run_name: str, config: Mapping[str, Any]):
        try:
            import tensorboard  # noqa: F401 - torch's writer needs it; say so before torch's own error
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard" / run_name))
        self.writer.add_text("config", "\n".join(f"    {key}: {value}" for key, value in config.items()))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, folder: Path, run_name: str, config: Mapping[str, Any]):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb") from None
        (folder / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ftrl"),
            name=run_name,
            dir=str(folder / "wandb"),
            mode=os.environ.get("WANDB_MODE", "offline"),  # nothing leaves the machine unless asked
            config=dict(config),
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, folder: Path, run_name: str, config: Mapping[str, Any]):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow") from None
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            uri = (folder / "mlruns").resolve().as_uri()
            # mlflow 3 keeps the file store (no server, no database driver) but asks to opt in to it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ftrl")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        for key, value in list(config.items())[:100]:
            self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class TrackioTracker:
    def __init__(self, folder: Path, run_name: str, config: Mapping[str, Any]):
        try:
            import trackio
        except ImportError:
            raise _missing("trackio") from None
        self.trackio = trackio
        trackio.init(project=os.environ.get("TRACKIO_PROJECT", "ftrl"), name=run_name, config=dict(config))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.trackio.log(dict(metrics), step=step)

    def close(self) -> None:
        self.trackio.finish()


MAKERS: dict[str, type] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
    "trackio": TrackioTracker,
}


def numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric fields of a metrics row (what a tracker can plot), without the step counter."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != "step"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }


class MetricsLog:
    """`metrics.jsonl` plus every tracker of `report_to`: `write(row)` appends the row and logs its numbers at
    `row["step"]`. A context manager; trackers are opened on entry and closed (flushed) on exit."""

    def __init__(
        self,
        path: str | Path,
        report_to: str | Sequence[str] | None = None,
        *,
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.names = parse_report_to(report_to)
        self.run_name = run_name or self.path.parent.resolve().name
        self.config = dict(config or {})
        self.trackers: list[Tracker] = []
        self._appender: JsonlAppender | None = None

    def __enter__(self) -> MetricsLog:
        self._appender = JsonlAppender(self.path)
        folder = self.path.parent / TRACKERS_DIR
        try:
            for name in self.names:
                self.trackers.append(MAKERS[name](folder, self.run_name, self.config))
        except BaseException:
            self.close()
            raise
        return self

    def write(self, row: Mapping[str, Any]) -> None:
        assert self._appender is not None, "use MetricsLog as a context manager"
        self._appender.write(dict(row))
        values = numbers(row)
        if values:
            for tracker in self.trackers:
                tracker.log(values, int(row.get("step", 0)))

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []
        if self._appender is not None:
            self._appender.close()
            self._appender = None

    def __exit__(self, *exc: object) -> None:
        self.close()
