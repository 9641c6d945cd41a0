"""Text file I/O for evaluate and rerank: strict UTF-8 lines in, atomic files out.

Why strict: a metric computed over silently replaced bytes is a wrong number
nobody notices, so an undecodable byte is an error naming the file and line.
Lines end at ``\\n`` (a ``\\r`` before it is dropped); a UTF-8 BOM and a
missing final newline are accepted. Empty lines are kept: in a predictions
file an empty line is an empty hypothesis, not a line to skip.
``"-"`` means standard input.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import DataError, DiffuseqError, UsageError

_BOM = b"\xef\xbb\xbf"


def display_name(path: str | Path) -> str:
    """How messages and reports name ``path``: ``<stdin>`` for ``"-"``."""
    return "<stdin>" if str(path) == "-" else str(path)


def check_readable(path: str | Path, what: str | None = None) -> None:
    """A usage error (exit 2) for a path that is a folder or missing, so that commands fail
    before any work or output; ``what`` says which input it is ("training data")."""
    p = Path(path)
    prefix = f"{what} " if what else ""
    if p.is_dir():
        raise UsageError(f"{prefix}{p}: is a folder, not a text file")
    if not p.exists():
        raise UsageError(f"{prefix}{p}: no such file")


def check_writable(path: str | Path | None, inputs: Sequence[str | Path] = ()) -> None:
    """Fail before any work when the output ``path`` (None or ``"-"``: stdout) is one of ``inputs``
    (the same file however it is named: relative, absolute, a link) or cannot be written, with the
    system's reason. Nothing is changed: an existing file is opened without truncating and given
    an empty write (which a file that takes no writes, such as /proc/version, refuses); a new one
    is created and removed again. Pipes and devices are written as they come."""
    if path is None or str(path) == "-":
        return
    target = Path(path)
    for source in inputs:
        if str(source) != "-" and _same_file(target, Path(source)):
            which = "the input file" if len(inputs) == 1 else "one of the input files"
            raise UsageError(f"{target} is {which}; writing to it would destroy it (choose another -o)")
    if target.is_dir():
        raise UsageError(f"{target}: is a folder, not a file (choose a file name for -o)")
    try:
        if target.exists():
            if target.is_file():
                fd = os.open(target, os.O_WRONLY)
                try:
                    os.write(fd, b"")
                finally:
                    os.close(fd)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            os.unlink(target)
    except OSError as exc:
        raise DiffuseqError(f"{target}: cannot write ({exc.strerror or exc})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing
        return False


def rereadable(path: str | Path) -> bool:
    """A regular file, which can be read through once to check it and again to use it; stdin ("-"),
    pipes and devices can only be read once, and are checked as they are read."""
    return str(path) != "-" and Path(path).is_file()


def count_lines(path: str | Path) -> int | None:
    """Lines as ``iter_lines`` reads them (a last line without a final newline counts); None for
    stdin and anything but a regular file, which cannot be read twice."""
    if not rereadable(path):
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _open_binary(path: str | Path):
    if str(path) == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    check_readable(path)
    p = Path(path)
    try:
        return open(p, "rb")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file") from None
    except OSError as exc:
        raise DiffuseqError(f"{p}: cannot read ({exc.strerror or exc})") from None


def iter_lines(path: str | Path) -> Iterator[str]:
    """Yield the lines of ``path`` without their line ending, decoding each strictly.

    Reads one line at a time, so memory stays flat on long files.
    """
    name = display_name(path)
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            yield decode_line(raw, number, name)


def decode_line(raw: bytes, number: int, name: str) -> str:
    """One raw line (``number`` from 1) as text, without its line ending (and a first line's BOM);
    bytes that are not UTF-8 are a DataError in the one wording every command uses."""
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise DataError(f"not valid UTF-8 (byte 0x{bad} at column {exc.start + 1})", name, number) from None


def read_lines(path: str | Path) -> list[str]:
    """All lines of ``path`` (see :func:`iter_lines`)."""
    return list(iter_lines(path))


@contextlib.contextmanager
def atomic_output(path: str | Path | None):
    """A text stream that becomes ``path`` only when the block ends without error.

    ``None`` or ``"-"`` is standard output (written as it goes). A file is
    written under a temporary name beside it and renamed at the end, so a
    failure never leaves a half-written result that looks whole (a pipe or a
    device, such as /dev/stdout, is written as it goes).
    """
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    if target.exists() and not target.is_file():  # a pipe or a device: written in place, never replaced
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:
        raise DiffuseqError(f"{target}: cannot write its temporary file in {target.parent} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
