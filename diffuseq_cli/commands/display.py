"""What the commands show on stderr, in one place: a spinner during set-up, live progress bars,
and a quiet exit when the reader of stdout goes away.

Rich draws only on a terminal; redirected or piped, the commands print plain lines or nothing,
so logs stay clean. stdout carries results only.
"""

from __future__ import annotations

import functools
import os
import sys
import threading


@functools.cache
def console():
    """The one stderr console (no syntax highlighting: messages show numbers and paths as they are)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def on_terminal(quiet: bool = False) -> bool:
    """Whether live displays belong on stderr: not asked to be quiet, and a person is watching."""
    return not quiet and sys.stderr.isatty()


class Spinner:
    """A transient spinner with a message while slow set-up runs (a terminal only)."""

    def __init__(self, message: str, quiet: bool = False):
        self.message, self.live = message, None
        self.enabled = on_terminal(quiet)

    def __enter__(self):
        if self.enabled:
            self.live = console().status(self.message)
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
        return False


class Bar:
    """One rich progress task redrawn in place, with the caller's columns; does nothing when disabled.

    ``redirect``: print what others write to stdout/stderr above the bar (a long display, like
    training's, whose workers may print), instead of leaving it to the terminal.
    ``fields`` are the task's initial values (``total``, ``completed``, ``description`` and any
    custom fields its columns read). ``print`` writes a line above the bar (or plainly without one);
    ``write_above`` writes a command's output to stdout, above the bar when both share a terminal.
    The bar is redrawn ten times a second by a thread of its own, under a lock that output shares,
    so that no redraw lands between erasing the bar and writing a line.
    """

    REFRESH_SECONDS = 0.1

    def __init__(self, columns, *, enabled: bool, transient: bool = True, redirect: bool = False, **fields):
        self.progress = self.task = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if not enabled:
            return
        from rich.progress import Progress

        self.progress = Progress(*columns, console=console(), transient=transient, auto_refresh=False,
                                 redirect_stdout=redirect, redirect_stderr=redirect)
        self.task = self.progress.add_task(fields.pop("description", ""), **fields)
        self.progress.start()
        self.refresh()
        threading.Thread(target=self._redraw, daemon=True, name="diffuseq-bar").start()

    def _redraw(self) -> None:
        while not self._stop.wait(self.REFRESH_SECONDS):
            self.refresh()

    def refresh(self) -> None:
        with self._lock:
            if self.progress is not None:
                self.progress.refresh()

    def update(self, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, **fields)

    def print(self, text: str) -> None:
        console().print(text, soft_wrap=True)  # above a live bar: rich keeps the bar at the bottom

    def write_above(self, stream, text: str) -> None:
        """Write ``text`` (whole lines) to ``stream`` and flush it. When the bar is live and the stream
        is a terminal too, the bar (one line, the cursor at its end) is erased first and redrawn
        below the new lines: the output scrolls up, the bar stays at the bottom."""
        with self._lock:
            erase = self.progress is not None and stream.isatty()
            if erase:
                console().file.write("\r\x1b[2K")
                console().file.flush()
            stream.write(text)
            stream.flush()
            if erase:
                self.progress.refresh()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def reader_gone(stream=None) -> bool:
    """Whether ``stream`` (stdout) is a pipe whose reader has left (``| head -1`` is done), without
    writing to it: the pipe then reports an error condition to ``poll``."""
    import select

    stream = stream or sys.stdout
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # not a file descriptor, or poll unavailable
        return False


def silence_stdout() -> None:
    """The reader of stdout left (``| head -1``): send what is still buffered to /dev/null, so the
    process ends without a BrokenPipeError at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
