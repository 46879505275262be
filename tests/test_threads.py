"""Torch threading defaults: only free CPUs, sleeping waiters, and the user's own settings win."""

from __future__ import annotations

import pytest

from ftrl.threads import configure_threads, default_threads


@pytest.mark.parametrize(("cpus", "load", "threads"), [(2, 0.1, 2), (2, 0.6, 1), (2, 4.0, 1), (8, 2.2, 6), (1, 0.0, 1)])
def test_threads_are_the_cpus_the_load_average_leaves_free(cpus, load, threads):
    assert default_threads(cpus, load) == threads


def test_user_settings_win(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    configure_threads()
    import os

    assert (os.environ["OMP_NUM_THREADS"], os.environ["OMP_WAIT_POLICY"]) == ("7", "ACTIVE")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    configure_threads(cpus=2, load=0.9)  # one core busy: one thread, sleeping waiters
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    configure_threads(cpus=2, load=0.1)  # idle: both cores, OpenMP's own (spinning) wait policy
    assert os.environ["OMP_NUM_THREADS"] == "2" and "OMP_WAIT_POLICY" not in os.environ


def _fake_cpu(monkeypatch, busy_fraction: float, cpus: int = 2, loadavg: float = 0.0):
    """Two `/proc/stat` readings 100 ticks apart with `busy_fraction` of them busy, and a 1-minute load average."""
    from ftrl import threads

    readings = iter([(1000, 500), (1100, 500 + round(100 * (1 - busy_fraction)))])
    monkeypatch.setattr(threads, "cpu_times", lambda: next(readings))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (loadavg, loadavg, loadavg))
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)


def test_an_idle_machine_gets_every_core_even_when_the_load_average_remembers_an_install(monkeypatch):
    _fake_cpu(monkeypatch, busy_fraction=0.02, loadavg=1.1)  # make install just ended: the average still says 1.1
    assert default_threads(cpus=2) == 2


def test_a_shared_machine_leaves_the_busy_cores_alone(monkeypatch):
    _fake_cpu(monkeypatch, busy_fraction=0.5, loadavg=0.0)  # one of two cores busy right now
    assert default_threads(cpus=2) == 1
    _fake_cpu(monkeypatch, busy_fraction=1.0, cpus=8, loadavg=0.0)
    assert default_threads(cpus=8) == 1  # never fewer than one


def test_load_average_is_the_fallback_without_proc_stat(monkeypatch):
    from ftrl import threads

    _fake_cpu(monkeypatch, busy_fraction=0.0, loadavg=1.0)

    def unreadable():
        raise OSError("no /proc")

    monkeypatch.setattr(threads, "cpu_times", unreadable)
    assert threads.busy_cpus() is None and default_threads(cpus=2) == 1


@pytest.mark.parametrize(
    ("args", "measured"),
    [
        (["--help"], False),
        (["validate", "--help"], False),
        (["eval", "--help"], False),
        (["stats", "x.jsonl"], False),
        (["build", "--backend", "none"], False),
        (["build", "--backend", "none", "--probe-model", "embedded"], True),  # a usage error: nothing runs
        (["eval", "--model", "m", "--envs", "e", "--out", "o"], True),
    ],
)
def test_only_commands_that_may_run_torch_watch_the_cpus(args, measured, monkeypatch):
    """The quarter-second CPU watch runs before torch commands only, never for `--help`."""
    from typer.testing import CliRunner

    from ftrl import threads
    from ftrl.cli import app

    calls = []
    monkeypatch.setattr(threads, "configure_threads", lambda: calls.append(1))
    CliRunner().invoke(app, args)
    assert bool(calls) == measured
