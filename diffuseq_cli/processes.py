"""Worker processes (``train --nproc/--gpus``, ``generate --nproc/--gpus``) that end with the
process that started them, however it ends."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGTERM this worker when its launching process dies.

    Without it, killing ``diffuseq train --nproc 2`` or ``generate --nproc 2`` (not its process
    group) leaves the workers running on, holding the cores (and a run folder).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(1, ctypes.c_ulong(signal.SIGTERM)) != 0:  # 1 = PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
