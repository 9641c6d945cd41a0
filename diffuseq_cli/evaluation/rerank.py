"""MBR reranking of candidate sets that already exist (from ``generate`` or another system).

Three layouts are read, one source at a time so memory stays flat:

* K line-aligned files, one per sample (line i of every file is a candidate of source i);
* one file with K consecutive lines per source (``per_line=K``);
* JSONL, one object per source with a ``candidates`` list of strings (what
  ``generate`` writes); other keys, such as ``src``, are passed through.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError, at_least
from ..textio import count_lines, display_name, iter_lines, rereadable
from .mbr import MBROutput, get_utility, mbr_select

INPUT_FORMATS = ("auto", "text", "jsonl")


@dataclass(frozen=True)
class CandidateSet:
    """The candidates of one source, plus any other fields its JSONL line carried."""

    candidates: list[str]
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RerankResult:
    """A candidate set with its MBR scores; ``nbest(n)`` gives the n best, best first."""

    candidates: list[str]
    output: MBROutput
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        return self.candidates[self.output.index]

    def nbest(self, n: int) -> list[str]:
        return [self.candidates[i] for i in self.output.ranking()[:n]]

    def to_json(self, nbest: int = 1) -> str:
        """One JSONL line: passed-through fields, candidates, their expected utility, the choice."""
        record = dict(self.extra)
        record.update(
            candidates=self.candidates,
            scores=self.output.scores,
            choice=self.output.index,
            best=self.best,
            nbest=self.nbest(nbest),
        )
        return json.dumps(record, ensure_ascii=False)


def _aligned(paths: Sequence, first: Iterator[str]) -> Iterator[CandidateSet]:
    """Line i of every file is one candidate set; unequal lengths are an error naming both files."""
    streams = [first] + [iter_lines(p) for p in paths[1:]]
    done = object()
    for count, row in enumerate(itertools.zip_longest(*streams, fillvalue=done)):
        if any(item is done for item in row):
            totals = [count + (item is not done) + sum(1 for _ in s) for item, s in zip(row, streams)]
            raise DataError(_misaligned([display_name(p) for p in paths], totals))
        yield CandidateSet(list(row))


def _grouped(path, lines: Iterator[str], k: int) -> Iterator[CandidateSet]:
    """K consecutive lines per source."""
    group: list[str] = []
    count = 0
    for count, line in enumerate(lines, start=1):
        group.append(line)
        if len(group) == k:
            yield CandidateSet(group)
            group = []
    if group:
        raise DataError(_not_multiple(display_name(path), count, k))


def _jsonl(path, lines: Iterator[str], k: int | None) -> Iterator[CandidateSet]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg})", display_name(path), number) from None
        candidates = record.get("candidates") if isinstance(record, dict) else None
        if not isinstance(candidates, list) or not candidates or not all(isinstance(c, str) for c in candidates):
            raise DataError('expected an object with a non-empty "candidates" list of strings', display_name(path), number)
        if k is not None and len(candidates) != k:
            raise DataError(f"{len(candidates)} candidates, but -n {k} was given", display_name(path), number)
        yield CandidateSet(candidates, {key: v for key, v in record.items() if key != "candidates"})


def read_candidate_sets(
    paths: Sequence[str | Path], *, per_line: int | None = None, input_format: str = "auto"
) -> Iterator[CandidateSet]:
    """Candidate sets from ``paths`` in input order (``"-"`` is stdin).

    ``input_format="auto"`` reads JSONL when the first line of the first file starts with ``{``.
    """
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"unknown input format {input_format!r}; choose one of: {', '.join(INPUT_FORMATS)}")
    if not paths:
        raise UsageError("give at least one candidates file")
    at_least("per_line", per_line)
    first = iter_lines(paths[0])
    head = next(first, None)
    lines = itertools.chain([] if head is None else [head], first)
    if input_format == "auto":
        input_format = "jsonl" if head is not None and head.lstrip().startswith("{") else "text"
    if input_format == "jsonl":
        if len(paths) > 1:
            raise UsageError("JSONL input is one file (one object per source); give only one")
        return _jsonl(paths[0], lines, per_line)
    if len(paths) > 1:
        if per_line not in (None, len(paths)):
            raise UsageError(f"-n {per_line} does not match the {len(paths)} candidate files given")
        _check_counts(paths, _misaligned)
        return _aligned(paths, lines)
    if per_line is None:
        raise UsageError("one text file of candidates needs -n K (K consecutive lines per source); "
                         "or give one file per sample, or JSONL")
    _check_counts(paths, lambda names, counts: _not_multiple(names[0], counts[0], per_line) if counts[0] % per_line else None)
    return _grouped(paths[0], lines, per_line)


def _misaligned(names: list[str], counts: list[int]) -> str | None:
    short, long = counts.index(min(counts)), counts.index(max(counts))
    if counts[short] == counts[long]:
        return None
    return (f"{names[short]} has {counts[short]} lines but {names[long]} has {counts[long]}; "
            "candidate files must be line-aligned")


def _not_multiple(name: str, count: int, k: int) -> str:
    return f"{name} has {count} lines, not a multiple of -n {k}"


def _check_counts(paths: Sequence, problem) -> None:
    """Misaligned regular files fail before any result is written (a pipe consumer sees nothing
    partial); stdin and other streams can only be checked as they are read (the exit status decides)."""
    if not all(rereadable(p) for p in paths):
        return
    message = problem([display_name(p) for p in paths], [count_lines(p) for p in paths])
    if message:
        raise DataError(message)


def rerank(sets: Iterator[CandidateSet], *, metric: str = "bleu", nbest: int = 1) -> Iterator[RerankResult]:
    """Score each set with MBR under ``metric``, lazily; a set smaller than ``nbest`` is an error."""
    get_utility(metric)
    at_least("nbest", nbest)
    for number, item in enumerate(sets, start=1):
        if len(item.candidates) < nbest:
            raise DataError(f"source {number} has {len(item.candidates)} candidates, fewer than --nbest {nbest}")
        yield RerankResult(item.candidates, mbr_select(item.candidates, metric), item.extra)
