"""Torch CPU threading defaults that stay fast when another process shares the CPU.

OpenMP's default wait policy lets a thread that finished its share spin, waiting for its peers. When another
process occupies one of the cores, the peer it waits for is descheduled and the spinning thread burns the time
slice the peer needed: evaluation with 2 threads ran several times slower than with 1 on a 2-core machine whose
other core was busy (benchmarks/RESULTS.md, "Torch threads under contention"). So every ftrl command, before torch
is imported, uses only the cores that are free now and, when some are busy, makes waiting threads sleep instead
(`OMP_WAIT_POLICY=PASSIVE`). Settings the user made (`OMP_WAIT_POLICY`, `OMP_NUM_THREADS`, `--threads`) win.

"Free now" is what the CPUs did in the last fraction of a second (`/proc/stat`), not the 1-minute load average:
that average decays slowly, so right after `make install` (which keeps every core busy and then exits) an idle
machine still looked half busy and the demo ran on one thread for its whole length (issue 24). The load average is
the fallback where `/proc/stat` cannot be read.
"""

from __future__ import annotations

import os
import time

#: Seconds over which `busy_cpus` watches the CPUs (every command waits this long once, at start).
WINDOW_S = 0.25


def busy_cpus(window_s: float = WINDOW_S) -> float | None:
    """How many CPUs other work kept busy during the last `window_s` seconds (`/proc/stat`: non-idle time over
    elapsed time, times the CPU count), or None where the file cannot be read. This process sleeps meanwhile, so
    it does not count itself."""

    try:
        total0, idle0 = cpu_times()
        time.sleep(window_s)
        total1, idle1 = cpu_times()
        cpus = os.cpu_count() or 1
    except (OSError, ValueError, IndexError):
        return None
    elapsed = total1 - total0
    return cpus * (elapsed - (idle1 - idle0)) / elapsed if elapsed > 0 else None


def cpu_times() -> tuple[int, int]:
    """All CPUs' total and idle time so far, in clock ticks (the `cpu` line of `/proc/stat`)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values[:8]), idle  # user..steal (guest time is already counted in user)


def default_threads(cpus: int | None = None, load: float | None = None) -> int:
    """CPUs this process may use minus those busy (`load`; default: `busy_cpus()`, else the 1-minute load
    average), at least 1."""
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    if load is None:
        busy = busy_cpus()
        load = busy if busy is not None else os.getloadavg()[0]
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
