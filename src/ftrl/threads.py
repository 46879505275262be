"""Torch CPU threading defaults that stay fast when another process shares the CPU.

OpenMP's default wait policy lets a thread that finished its share spin, waiting for its peers. When another
process occupies one of the cores, the peer it waits for is descheduled and the spinning thread burns the time
slice the peer needed: evaluation with 2 threads ran several times slower than with 1 on a 2-core machine whose
other core was busy (benchmarks/RESULTS.md, "Torch threads under contention"). So every ftrl command, before torch
is imported, makes waiting threads sleep instead (`OMP_WAIT_POLICY=PASSIVE`) and uses only the cores that the load
average says are free. Settings the user made (`OMP_WAIT_POLICY`, `OMP_NUM_THREADS`, `--threads`) win.
"""

from __future__ import annotations

import os


def default_threads(cpus: int | None = None, load: float | None = None) -> int:
    """CPUs this process may use minus those the 1-minute load average shows busy, at least 1."""
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    load = load if load is not None else os.getloadavg()[0]
    return max(1, cpus - int(load + 0.5))


def configure_threads() -> None:
    """Set the OpenMP environment for torch (effective only before torch is first imported)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(default_threads()))
