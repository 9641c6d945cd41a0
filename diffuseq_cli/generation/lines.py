"""Line formats of ``generate``: sources in (text or JSONL), results out (text or JSONL), and
how much of an earlier output ``--resume`` keeps."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import DataError

if TYPE_CHECKING:  # this module loads no torch: generate checks its input with it before the model loads
    from .stream import LineResult


def read_sources(lines, input_format: str, name: str) -> Iterator[str]:
    """Source strings from raw ``lines``; JSONL detected from the first non-empty line when
    ``input_format`` is auto (blank JSONL lines are skipped)."""
    lines = iter(lines)
    fmt = input_format
    buffered = []
    if fmt == "auto":
        fmt = "text"
        for text in lines:
            buffered.append(text)
            if text.strip():
                fmt = "jsonl" if text.lstrip().startswith("{") else "text"
                break
    for number, text in enumerate(itertools.chain(buffered, lines), start=1):
        source = parse_source(text, fmt, number, name)
        if source is not None:
            yield source


def parse_source(text: str, fmt: str, line_no: int, name: str) -> str | None:
    """One input line as a source: plain text, or JSONL with a "src" field (None: a blank JSONL line, skipped)."""
    if fmt == "text":
        return text
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg})", name, line_no) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("src"), str):
        raise DataError("expected a JSON object with a string 'src'", name, line_no)
    return obj["src"]


def format_result(result: LineResult, fmt: str, num_samples: int, mbr: bool) -> str:
    """The output text for one line: text (one or n lines) or one JSONL object."""
    if fmt == "jsonl":
        obj = {"line": result.line, "src": result.source, "candidates": result.candidates, "seeds": result.seeds}
        if result.mbr is not None:
            obj["mbr_choice"] = result.mbr.index
            obj["mbr_scores"] = result.mbr.scores
        obj["best"] = result.best
        obj["truncated"] = result.truncated
        return json.dumps(obj, ensure_ascii=False) + "\n"
    if mbr or num_samples == 1:
        return _one_line(result.best) + "\n"
    return "".join(_one_line(c) + "\n" for c in result.candidates)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def lines_done(path: Path, fmt: str, num_samples: int, mbr: bool) -> tuple[int, int]:
    """For --resume: (source lines already complete in ``path``, byte length of those complete lines).

    A last line without its newline (cut off by the interruption) does not count, nor does
    an incomplete group of ``num_samples`` lines. JSONL records are checked against the
    options: a file written with another -n or --mbr, or not by generate, is an error.
    """
    per_source = 1 if fmt == "jsonl" or mbr or num_samples == 1 else num_samples
    if not path.exists():
        return 0, 0
    complete_bytes, count, offset = 0, 0, 0
    last = b""
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a line cut off by the interruption
            offset += len(raw)
            count += 1
            if count % per_source == 0:
                complete_bytes = offset
                last = raw
    if fmt == "jsonl" and count:
        _check_jsonl_record(path, last, count, num_samples, mbr)
    return count // per_source, complete_bytes


def _check_jsonl_record(path: Path, raw: bytes, count: int, num_samples: int, mbr: bool) -> None:
    """The last complete record was written with these -n and --mbr (a record with "mbr_choice"
    came from --mbr)."""
    try:
        obj = json.loads(raw)
        ok = (isinstance(obj, dict) and len(obj.get("candidates", ())) == num_samples
              and ("mbr_choice" in obj) == (mbr and num_samples > 1))
    except (UnicodeDecodeError, json.JSONDecodeError):
        ok = False
    if not ok:
        asked = f"generate -n {num_samples}{' --mbr' if mbr else ''} -f jsonl"
        raise DataError(f"cannot resume: not JSONL from `{asked}`; use the options it was written with, "
                        "or another -o", path, count)
