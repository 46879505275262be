"""Build driver: run a backend into an append-only JSONL file that survives crashes and resumes exactly.

Rows are flushed one by one (`EnvAppender`). On a rerun with the same config the driver keeps the complete
rows already written (a torn last line is cut), continues at the index after the last one, and drops
rejection records at or beyond that index, so the result equals an uninterrupted build byte for byte.
The config identity is kept in `<out>.build.json`; resuming with a different one, or into a file without it, is
refused, and so is a second process building into the same file (a lock).
"""

from __future__ import annotations

import importlib
import json
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from ftrl.construction.base import Backend, Rejection
from ftrl.construction.config import BuildConfig
from ftrl.env.io import EnvAppender, iter_rows, row_to_environment
from ftrl.jsonl import DataError, JsonlAppender, iter_jsonl, repair_torn_tail, write_jsonl_atomic
from ftrl.provenance import lock_output
from ftrl.runtime.protocol import ToolRunner

Progress = Callable[[int, int], None]


@dataclass
class BuildReport:
    """What a build did: rows written now and before, rejections by stage, speed."""

    out: str
    written: int = 0
    resumed: int = 0
    rejected: int = 0
    rejection_stages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.resumed + self.written

    @property
    def envs_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0


def rejections_path(out: str | Path) -> Path:
    return Path(f"{out}.rejections.jsonl")


def _identity_path(out: str | Path) -> Path:
    return Path(f"{out}.build.json")


def make_backend(config: BuildConfig, runtime: ToolRunner) -> Backend:
    """The backend named by the config; `llm` is imported lazily (it needs network settings)."""
    if config.backend == "procedural":
        from ftrl.construction.procedural import ProceduralBackend

        return ProceduralBackend(config, runtime)
    if config.backend == "llm":
        return importlib.import_module("ftrl.construction.llm").make_backend(config, runtime)
    raise ValueError(f"unknown backend {config.backend!r}; expected 'procedural' or 'llm'")


def resume_point(out: str | Path, config: BuildConfig) -> tuple[int, int]:
    """`(rows already written, next index)` of an interrupted build, after checking that it is one: same config
    (its `.build.json`), and every row a complete environment with increasing `index`."""
    path = Path(out)
    if not path.exists() or path.stat().st_size == 0:
        return 0, 0
    identity = _identity_path(out)
    hint = "use --overwrite to replace it, or a new --out"
    if not identity.exists():
        raise ValueError(f"{out} exists but is not a build ({identity.name} missing); {hint}")
    try:
        stored = json.loads(identity.read_text(encoding="utf-8"))
    except ValueError:
        stored = None
    if stored != config.identity():
        raise ValueError(f"{out} was built with another config; {hint}")
    last = -1
    count = 0
    for line, row in iter_rows(path, allow_torn_tail=True):
        row_to_environment(row, path, line)
        index = row.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index <= last:
            raise DataError(path, line, "index", f"must be an integer above the previous row's ({last}), got {index!r}")
        last, count = index, count + 1
    return count, last + 1


def _trim_rejections(out: str | Path, start: int) -> None:
    """Drop rejection records from an interrupted run at or after `start`; they will be produced again."""
    path = rejections_path(out)
    if not path.exists():
        return
    repair_torn_tail(path)
    kept = [row for _, row in iter_jsonl(path) if row["index"] < start]
    write_jsonl_atomic(path, kept)


def build_environments(
    config: BuildConfig,
    out_path: str | Path,
    progress: Progress | None = None,
    runtime: ToolRunner | None = None,
    *,
    overwrite: bool = False,
) -> BuildReport:
    """Build `config.n` environments into `out_path` (resuming a partial file), logging rejections beside it.

    `runtime` defaults to a fresh `ToolRuntime` with the config's timeout and workers; `progress(done, n)`
    is called after every row. A second process building into the same file is refused (`OutputError`); with
    `overwrite` an existing file and its sidecars are replaced instead of resumed.
    """
    with lock_output(out_path, folder=False):
        if overwrite:
            for path in (Path(out_path), _identity_path(out_path), rejections_path(out_path)):
                path.unlink(missing_ok=True)
        return _build_locked(config, out_path, progress, runtime)


def _build_locked(
    config: BuildConfig, out_path: str | Path, progress: Progress | None, runtime: ToolRunner | None
) -> BuildReport:
    report = BuildReport(str(out_path))
    report.resumed, start = resume_point(out_path, config)
    _trim_rejections(out_path, start)
    identity = _identity_path(out_path)
    identity.parent.mkdir(parents=True, exist_ok=True)
    identity.write_text(json.dumps(config.identity(), indent=1), encoding="utf-8")
    stages: Counter[str] = Counter()
    began = time.perf_counter()
    with ExitStack() as stack:
        if runtime is None:
            from ftrl.runtime import RuntimeConfig, ToolRuntime

            runtime = stack.enter_context(
                ToolRuntime(RuntimeConfig(timeout_s=config.timeout_s, workers=config.workers))
            )
        envs = stack.enter_context(EnvAppender(out_path))
        rejects = stack.enter_context(JsonlAppender(rejections_path(out_path)))
        done = report.resumed
        if progress:
            progress(done, config.n)
        if done < config.n:
            for item in make_backend(config, runtime).build(config, start):
                if isinstance(item, Rejection):
                    rejects.write(item.to_row())
                    stages[item.stage] += 1
                    continue
                envs.write_env(item)
                done += 1
                if progress:
                    progress(done, config.n)
                if done >= config.n:
                    break
    report.written = done - report.resumed
    report.rejected = sum(stages.values())
    report.rejection_stages = dict(stages)
    report.seconds = time.perf_counter() - began
    return report
