"""``generate -o FILE``: the output file, which nothing before the first finished line may touch.

* The file is opened when the first finished line is written, not before: a job that fails
  earlier (a bad input, a model that does not load) leaves an existing file as it was and
  creates no empty one. A job that ends well with no lines still leaves an empty file.
* ``--resume`` keeps the complete lines already there; the cut-off tail is removed only when
  the first new line is written, so a failed resume loses nothing either.
* A text file does not say how it was written, and a resume with another ``-n`` or ``--mbr``
  would count its lines wrongly (four lines per source read as two sources). So beside a text
  output a small record of the options that shape it is kept (``.NAME.generate.json``), and
  ``--resume`` refuses options that differ. JSONL records carry their own shape.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from ..errors import DiffuseqError, UsageError
from .lines import lines_done


@dataclass(frozen=True)
class OutputShape:
    """The options that decide how many lines a source takes and what they hold."""

    format: str
    num_samples: int
    mbr: bool

    def describe(self) -> str:
        return f"-n {self.num_samples}{' --mbr' if self.mbr else ''} -f {self.format}"


def record_path(path: Path) -> Path:
    """Where the shape of a text output is recorded: ``.out.txt.generate.json`` beside ``out.txt``."""
    return path.with_name(f".{path.name}.generate.json")


def read_record(path: Path) -> OutputShape | None:
    """The recorded shape of the text output ``path``; None when there is no (readable) record."""
    try:
        return OutputShape(**json.loads(record_path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


class ResultFile:
    """A text stream into ``path`` that comes into being with its first line (see the module)."""

    def __init__(self, path: Path, shape: OutputShape, resume: bool):
        self.path, self.shape, self.resume = path, shape, resume
        self.kept, self.keep_bytes = 0, 0  # with --resume: complete sources already in the file
        self.note = ""  # what --resume found that a person should know
        self._handle: TextIO | None = None
        if resume:
            self.kept, self.keep_bytes = lines_done(path, shape.format, shape.num_samples, shape.mbr)
            self._check_shape()

    def _check_shape(self) -> None:
        if self.shape.format != "text" or not self.kept:
            return  # JSONL was checked record by record (lines_done); an empty file has no shape yet
        recorded = read_record(self.path)
        if recorded is None:
            self.note = (f"note: {self.path} has no record of the options it was written with "
                         f"({record_path(self.path).name}); resuming it as {self.shape.describe()}")
        elif recorded != self.shape:
            raise UsageError(f"cannot resume {self.path}: it was written with {recorded.describe()}, this run asks "
                             f"for {self.shape.describe()}; use the same options, or another -o")

    def write(self, text: str) -> None:
        """Write and flush ``text``; the first call opens (or, resuming, cuts back) the file."""
        if self._handle is None:
            self._open()
        try:
            self._handle.write(text)
            self._handle.flush()
        except OSError as exc:  # a full disk, a file that takes no writes
            raise DiffuseqError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def finish(self) -> None:
        """The job ended well: the file exists even when no line was written (empty input)."""
        if self._handle is None:
            self._open()
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.close()
            except OSError:
                pass  # the write that failed already said so

    def _open(self) -> None:
        try:
            if self.resume and self.path.exists():
                os.truncate(self.path, self.keep_bytes)
            self._handle = open(self.path, "a" if self.resume else "w", encoding="utf-8", newline="\n")
            self._write_record()
        except OSError as exc:
            raise DiffuseqError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def _write_record(self) -> None:
        record = record_path(self.path)
        if self.shape.format == "text":
            if self.path.is_file():  # not for a pipe or a device
                record.write_text(json.dumps(asdict(self.shape)) + "\n", encoding="utf-8")
        elif record.exists():
            record.unlink()  # a text run's record beside what is now JSONL
