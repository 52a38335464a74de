"""How many CPU threads torch should use: the cores that are actually free, not every core.

torch starts one thread per core. When another process keeps a core busy (a training job, a second
generation), those threads wait on each other and a run gets several times slower than with fewer threads
(docs/guide.md, "Threads"). The default here is the number of cores this process may use minus the
cores other processes keep busy, measured over a tenth of a second from ``/proc/stat`` (this process's
own time taken out; the one-minute load average where ``/proc`` is missing), at least 1.
``SEGAKIT_THREADS`` or an explicit count (``--threads``) overrides it.
"""

from __future__ import annotations

import os
import time

from segakit.core.errors import UserError


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; the machine's count where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_cores(cores: int, load: float) -> int:
    """``cores`` minus the ones a ``load`` (runnable processes, averaged) keeps busy; at least 1."""
    return max(1, min(cores, cores - int(load + 0.5)))


def choose_threads(requested: int | None = None) -> int:
    """The thread count to use: ``requested``, else ``SEGAKIT_THREADS``, else the free cores."""
    if requested is None and os.environ.get("SEGAKIT_THREADS"):
        text = os.environ["SEGAKIT_THREADS"]
        try:
            requested = int(text)
        except ValueError:
            raise UserError(
                f"SEGAKIT_THREADS={text!r} is not a whole number; set it to 1 or more, or unset it."
            ) from None
    if requested is not None:
        if requested < 1:
            raise UserError(
                f"--threads {requested} is below 1; use 1 or more (default: the cores not busy with other work)."
            )
        return requested
    load = busy_elsewhere()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return free_cores(usable_cores(), load)


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(busy, total) clock ticks summed over ``cpus`` from /proc/stat."""
    busy = total = 0
    for line in open("/proc/stat").read().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def _own_ticks() -> int:
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def busy_elsewhere(window: float = 0.1) -> float | None:
    """How many of this process's cores other processes kept busy over ``window`` seconds; None without /proc."""
    try:
        cpus = os.sched_getaffinity(0)
        busy0, total0 = _cpu_times(cpus)
        own0 = _own_ticks()
        time.sleep(window)
        busy1, total1 = _cpu_times(cpus)
        own1 = _own_ticks()
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    others = max(0, (busy1 - busy0) - (own1 - own0))
    return others / (total1 - total0) * len(cpus)


def set_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count (see :func:`choose_threads`) and return it."""
    import torch

    n = choose_threads(requested)
    torch.set_num_threads(n)
    return n
