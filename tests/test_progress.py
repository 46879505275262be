"""Progress that a log file shows: plain lines every N% or every 30 s when output is not a terminal."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from ftrl.progress import LogProgress, format_seconds, make_progress


def test_log_progress_prints_every_ten_percent_with_an_eta():
    clock = [0.0]
    out = io.StringIO()
    progress = LogProgress(Console(file=out, width=200), clock=lambda: clock[0])
    with progress:
        task = progress.add_task("episodes", total=40)
        for _ in range(40):
            clock[0] += 2.0
            progress.advance(task)
    lines = out.getvalue().splitlines()
    assert lines[0] == "episodes: 0/40 (0%), 0s elapsed"
    assert len(lines) == 11 and lines[-1] == "episodes: 40/40 (100%), 1m20s elapsed, done"
    assert lines[5] == "episodes: 20/40 (50%), 40s elapsed, ETA 40s"


def test_log_progress_prints_after_30_seconds_without_a_new_percent():
    clock = [0.0]
    out = io.StringIO()
    progress = LogProgress(Console(file=out, width=200), clock=lambda: clock[0])
    task = progress.add_task("train steps", total=1000, completed=100)  # resumed at step 100
    clock[0] += 31.0
    progress.update(task, completed=101)  # 0.1% later, but 31 s since the last line
    assert (
        out.getvalue().splitlines()[-1] == "train steps: 101/1000 (10%), 31s elapsed, ETA 7h44m29s"
    )  # 31 s a step, 899 to go


def test_heartbeat_line_while_nothing_advances():
    out = io.StringIO()
    progress = LogProgress(Console(file=out, width=200), every_s=0.05)
    with progress:
        progress.add_task("episodes", total=48)
        import time

        time.sleep(0.4)
    assert out.getvalue().count("episodes: 0/48 (0%)") >= 2


def test_a_terminal_gets_the_live_bar_and_a_file_the_log_lines():
    assert isinstance(make_progress(Console(file=io.StringIO())), LogProgress)
    live = make_progress(Console(file=io.StringIO(), force_terminal=True))
    assert type(live) is Progress and any("Remaining" in type(c).__name__ for c in live.columns)
    assert format_seconds(3725) == "1h02m05s"
