"""CPU threads for the command: a default that stays fast on a shared machine.

OpenMP's threads spin while they wait for each other. When another process holds one of the
cores, a spinning thread burns the time slice its partner needs, and torch's default (a thread
per core) ran 2-8x slower than one thread (docs/benchmarks.md, "Threads"). A passive wait
policy makes waiting threads sleep instead: as fast as one thread under load, and the
default's speed on a quiet machine. It must be set before torch (and its OpenMP runtime)
is imported, so the command sets it first; a value the user set is left alone.
"""

from __future__ import annotations

import os
import sys


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container or taskset narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure(threads: int | None = None) -> None:
    """Before torch is imported: a passive OpenMP wait policy unless set, and ``--threads`` if given."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is None:
        return
    before = os.environ.get("OMP_NUM_THREADS")
    if before is not None and before != str(threads):
        print(f"note: --threads {threads} overrides OMP_NUM_THREADS={before}", file=sys.stderr)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # imported already (the Python API, tests): set it directly
        sys.modules["torch"].set_num_threads(threads)
