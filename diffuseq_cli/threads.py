"""CPU threads for the command: a default that stays fast on a shared machine.

OpenMP's threads spin while they wait for each other. When another process holds one of the
cores, a spinning thread burns the time slice its partner needs, and torch's default (a thread
per core) ran 2-8x slower than one thread (docs/benchmarks.md, "Threads"). Never spinning
(OMP_WAIT_POLICY=PASSIVE) cures that but costs a quarter on a quiet machine, where a short spin
catches the partner's result without a sleep. So the command lets waiting threads spin briefly
(GNU OpenMP's GOMP_SPINCOUNT, Intel OpenMP's KMP_BLOCKTIME) and then sleep: within about 15%
of the best setting both quiet and beside a busy process. It must be set before torch (and its
OpenMP runtime) is imported, so the command sets it first; values the user set, or a wait policy
of their own, are left alone.
"""

from __future__ import annotations

import os
import sys


SPIN_COUNT = "1000"  # bench/bench_threads.py: 1,000 spins then sleep; 10,000 was 1.4x slower under load


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container or taskset narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure(threads: int | None = None) -> None:
    """Before torch is imported: a short OpenMP spin before sleeping unless set, and ``--threads`` if given."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
        os.environ.setdefault("KMP_BLOCKTIME", "1")  # milliseconds: the same idea for Intel's runtime
    if threads is None:
        return
    before = os.environ.get("OMP_NUM_THREADS")
    if before is not None and before != str(threads):
        print(f"note: --threads {threads} overrides OMP_NUM_THREADS={before}", file=sys.stderr)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # imported already (the Python API, tests): set it directly
        sys.modules["torch"].set_num_threads(threads)
