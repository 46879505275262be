"""Progress of long work that both a person at a terminal and a log file can follow.

On a terminal: rich's live bar with the count, elapsed time and ETA. When output is not a terminal (`make demo >
log`, nohup, CI) a live display prints nothing until it ends, so `make_progress` returns a `LogProgress` instead:
the same rich `Progress` API (callers do not care which they got), printing one plain line per task every
`every_percent` % of its total or every `every_s` seconds, whichever comes first, and a heartbeat line every
`every_s` seconds while nothing advances (a batch of episodes that all end together, one long training step).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: A line at least every this many percent of a task's total, when output is not a terminal.
EVERY_PERCENT = 10.0
#: ...and at least every this many seconds.
EVERY_S = 30.0


def make_progress(console: Console | None = None, *, transient: bool = False) -> Progress:
    """A live bar with ETA on a terminal, else a `LogProgress` that prints plain lines."""
    console = console or Console(stderr=True)
    if console.is_terminal and not console.is_dumb_terminal:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        return Progress(*columns, console=console, transient=transient)
    return LogProgress(console=console)


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class LogProgress(Progress):
    """rich's `Progress` with its live display off, printing a plain line now and then (see the module doc).

    The ETA is the average rate since the task was created (resumed work counted from where it resumed), which
    is steadier in a log than a rate over the last seconds.
    """

    def __init__(
        self,
        console: Console | None = None,
        every_percent: float = EVERY_PERCENT,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(console=console, disable=True, get_time=clock)
        self.every_percent = every_percent
        self.every_s = every_s
        self._clock = clock
        #: task -> (completed when created, creation time, last printed bucket of every_percent, last print time)
        self._marks: dict[TaskID, list[float]] = {}
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def add_task(
        self,
        description: str,
        start: bool = True,
        total: float | None = 100.0,
        completed: int = 0,
        visible: bool = True,
        **fields: Any,
    ) -> TaskID:
        task = super().add_task(description, start, total, completed, visible, **fields)
        now = self._clock()
        self._marks[task] = [float(completed), now, self._bucket(completed, total), now]
        self._print(task)
        return task

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._maybe_print(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_print(task_id)

    def start(self) -> None:
        if self._heartbeat is None:
            self._stop.clear()
            self._heartbeat = threading.Thread(target=self._beat, name="ftrl-progress", daemon=True)
            self._heartbeat.start()

    def stop(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None

    def line(self, task_id: TaskID) -> str:
        """`description: done/total (pct%), elapsed, ETA` of one task."""
        with self._lock:
            task = self._tasks[task_id]
            first, created = self._marks[task_id][:2]
            elapsed = self._clock() - created
            text = f"{task.description}: {task.completed:g}"
            if task.total:
                text += f"/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
            text += f", {format_seconds(elapsed)} elapsed"
            done = task.completed - first
            if task.total and task.completed >= task.total:
                text += ", done"
            elif task.total and done > 0:
                text += f", ETA {format_seconds(elapsed * (task.total - task.completed) / done)}"
            return text

    def _bucket(self, completed: float, total: float | None) -> float:
        return (100 * completed / total) // self.every_percent if total else 0.0

    def _maybe_print(self, task_id: TaskID) -> None:
        with self._lock:
            task, marks = self._tasks[task_id], self._marks.get(task_id)
            if marks is None:
                return
            bucket = self._bucket(task.completed, task.total)
            due = bucket > marks[2] or self._clock() - marks[3] >= self.every_s
        if due:
            self._print(task_id)

    def _print(self, task_id: TaskID) -> None:
        with self._lock:
            task, marks = self._tasks[task_id], self._marks[task_id]
            marks[2], marks[3] = self._bucket(task.completed, task.total), self._clock()
        self.console.print(self.line(task_id), markup=True, highlight=False, soft_wrap=True)

    def _beat(self) -> None:
        while not self._stop.wait(min(self.every_s, 5.0)):
            with self._lock:
                quiet = [
                    task
                    for task, marks in self._marks.items()
                    if not self._tasks[task].finished and self._clock() - marks[3] >= self.every_s
                ]
            for task in quiet:
                self._print(task)
