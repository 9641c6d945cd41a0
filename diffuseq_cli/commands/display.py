"""What the commands show on stderr, in one place: a spinner during set-up, live progress bars,
and a quiet exit when the reader of stdout goes away.

Rich draws only on a terminal; redirected or piped, the commands print plain lines or nothing,
so logs stay clean. stdout carries results only.
"""

from __future__ import annotations

import functools
import os
import sys


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
    custom fields its columns read). ``print`` writes a line above the bar (or plainly without one).
    """

    def __init__(self, columns, *, enabled: bool, transient: bool = True, redirect: bool = False, **fields):
        self.progress = self.task = None
        if not enabled:
            return
        from rich.progress import Progress

        self.progress = Progress(*columns, console=console(), transient=transient,
                                 redirect_stdout=redirect, redirect_stderr=redirect)
        self.task = self.progress.add_task(fields.pop("description", ""), **fields)
        self.progress.start()

    def update(self, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, **fields)

    def print(self, text: str) -> None:
        console().print(text, soft_wrap=True)  # above a live bar: rich keeps the bar at the bottom

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def silence_stdout() -> None:
    """The reader of stdout left (``| head -1``): send what is still buffered to /dev/null, so the
    process ends without a BrokenPipeError at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
