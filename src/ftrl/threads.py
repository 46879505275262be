"""Torch CPU threading defaults that stay fast when another process shares the CPU.

OpenMP's default wait policy lets a thread that finished its share spin, waiting for its peers. When another
process occupies one of the cores, the peer it waits for is descheduled and the spinning thread burns the time
slice the peer needed: evaluation with 2 threads ran several times slower than with 1 on a 2-core machine whose
other core was busy (benchmarks/RESULTS.md, "Torch threads under contention"). So every ftrl command, before torch
is imported, uses only the cores that the load average says are free and, when some are busy, makes waiting
threads sleep instead (`OMP_WAIT_POLICY=PASSIVE`). Settings the user made (`OMP_WAIT_POLICY`, `OMP_NUM_THREADS`,
`--threads`) win.
"""

from __future__ import annotations

import os


def default_threads(cpus: int | None = None, load: float | None = None) -> int:
    """CPUs this process may use minus those the 1-minute load average shows busy, at least 1."""
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    load = load if load is not None else os.getloadavg()[0]
    return max(1, cpus - int(load + 0.5))


def configure_threads(cpus: int | None = None, load: float | None = None) -> None:
    """Set the OpenMP environment for torch (effective only before torch is first imported).

    Waiting threads sleep (`OMP_WAIT_POLICY=PASSIVE`) only when the machine is already shared at start: on an
    idle 2-core machine the passive policy cost a third of the speed (the wake-up latency at each parallel
    region), while under contention it avoids the collapse (benchmarks/RESULTS.md, "Torch threads").
    """
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    threads = default_threads(cpus, load)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if threads < cpus:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
