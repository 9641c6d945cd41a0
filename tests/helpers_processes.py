"""Finding the processes a test started (a command and its workers) by a marker in their environment;
starting one as a terminal would, for the tests that press Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path


def marked_env() -> tuple[dict, str]:
    """An environment whose processes (the command and its workers) can be found by a marker."""
    mark = uuid.uuid4().hex
    return dict(os.environ, OMP_NUM_THREADS="1", DIFFUSEQ_TEST_MARK=mark), mark


def alive_with(mark: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if f"DIFFUSEQ_TEST_MARK={mark}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def none_left(mark: str, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive_with(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive_with(mark)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a command a test interrupts with SIGINT: Ctrl-C's default action, as in a
    terminal's foreground job. A test run started in the background of a script (``cmd &``) has
    SIGINT ignored, which a child inherits, and the signal would then do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
