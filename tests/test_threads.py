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
