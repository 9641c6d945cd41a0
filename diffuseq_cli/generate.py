"""``diffuseq generate``: stream source lines through sampling, in input order, with optional MBR.

Lines are read by a background thread so that a batch can be formed with a time
limit: with stdin held open, the first line's output appears before the input ends.
Memory stays flat: at most ``max_pending`` unfinished lines are held; when that many
wait, the batch holding the oldest one runs even if it is not full.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from .checkpoint import LoadedModel
from .diffusion import Diffusion
from .errors import DataError
from .generation import Job, SamplingOptions, candidate_seed, prepare, sample_jobs
from .mbr import MBROutput, mbr_select


@dataclass(frozen=True)
class GenerateOptions:
    num_samples: int = 1
    batch_size: int = 64  # candidates per model call
    mbr: bool = False
    mbr_metric: str = "bleu"
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    device: str = "cpu"
    precision: str = "fp32"
    flush_seconds: float = 0.5  # run a partial batch when no input arrived for this long
    max_pending: int = 0  # unfinished lines held at most (0: 4 batches' worth)


@dataclass
class LineResult:
    line: int
    source: str
    candidates: list[str]
    seeds: list[int]
    mbr: MBROutput | None = None
    truncated: bool = False

    @property
    def best(self) -> str:
        return self.candidates[self.mbr.index if self.mbr else 0]


_END = object()


def _reader(lines: Iterable[str], q: queue.Queue) -> None:
    try:
        for text in lines:
            q.put(text)
        q.put(_END)
    except BaseException as exc:  # handed to the consumer, which raises it
        q.put(exc)


def generate_stream(
    loaded: LoadedModel,
    lines: Iterable[str],
    opts: GenerateOptions,
    start_line: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
) -> Iterator[LineResult]:
    """Yield one LineResult per input line, in input order. ``on_batch(lines_done, candidates)`` reports progress."""
    device = torch.device(opts.device)
    diffusion = Diffusion(loaded.config.diffusion)
    n = opts.num_samples
    # Whole lines per batch: all n candidates of a line are sampled together.
    batch = max(n, opts.batch_size // n * n)
    max_pending = opts.max_pending or max(4 * batch // n, 8)
    q: queue.Queue = queue.Queue(maxsize=max(2 * batch, 64))
    threading.Thread(target=_reader, args=(lines, q), daemon=True).start()

    buckets: dict[int, list[tuple[Job, int]]] = defaultdict(list)  # length -> (job, k) waiting
    sources: dict[int, str] = {}
    jobs: dict[int, Job] = {}
    done: dict[int, list[str | None]] = {}
    next_line = start_line  # next line number to read
    next_emit = start_line
    finished_lines = 0

    def run(length: int, count: int) -> None:
        nonlocal finished_lines
        work, buckets[length] = buckets[length][:count], buckets[length][count:]
        if not buckets[length]:
            del buckets[length]
        rows = sample_jobs(loaded, diffusion, [j for j, _ in work], [k for _, k in work], opts.sampling, device, opts.precision)
        for (job, k), text in zip(work, loaded.tokenizer.decode(rows)):
            done[job.line][k] = text
        if on_batch:
            on_batch(finished_lines, len(work))

    def ready() -> Iterator[LineResult]:
        nonlocal next_emit, finished_lines
        while next_emit in done and all(c is not None for c in done[next_emit]):
            cands = done.pop(next_emit)
            job = jobs.pop(next_emit, None)
            result = LineResult(
                line=next_emit, source=sources.pop(next_emit), candidates=cands,  # type: ignore[arg-type]
                seeds=[candidate_seed(opts.sampling.seed, next_emit, k) for k in range(n)],
                truncated=bool(job and job.truncated),
            )
            if opts.mbr and n > 1 and job is not None:
                result.mbr = mbr_select(cands, opts.mbr_metric)  # type: ignore[arg-type]
            next_emit += 1
            finished_lines += 1
            yield result

    ended = False
    while not ended:
        try:
            item = q.get(timeout=opts.flush_seconds if buckets else None)
        except queue.Empty:
            for length in sorted(buckets, key=lambda L: -len(buckets[L])):
                while length in buckets:
                    run(length, batch)
            yield from ready()
            continue
        if item is _END:
            ended = True
            for length in sorted(buckets):
                while length in buckets:
                    run(length, batch)
        elif isinstance(item, BaseException):
            raise item
        else:
            line = next_line
            next_line += 1
            sources[line] = item
            if not item.strip():
                done[line] = [""] * n  # an empty line passes through as an empty output line
            else:
                job = prepare(loaded, [item], line, opts.sampling)[0]
                jobs[line] = job
                done[line] = [None] * n
                buckets[job.length].extend((job, k) for k in range(n))
                if len(buckets[job.length]) >= batch:
                    run(job.length, batch)
        yield from ready()
        while len(done) > max_pending:
            oldest = jobs.get(next_emit)
            if oldest is None or oldest.length not in buckets:
                break
            run(oldest.length, batch)
            yield from ready()


def parse_source(text: str, fmt: str, line_no: int, name: str) -> str:
    """One input line as a source: plain text, or JSONL with a "src" field."""
    if fmt == "text":
        return text
    if not text.strip():
        return ""
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
        return json.dumps(obj, ensure_ascii=False) + "\n"
    if mbr or num_samples == 1:
        return _one_line(result.best) + "\n"
    return "".join(_one_line(c) + "\n" for c in result.candidates)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def lines_done(path: Path, fmt: str, num_samples: int, mbr: bool) -> tuple[int, int]:
    """For --resume: (source lines already complete in ``path``, byte length of those complete lines)."""
    per_source = 1 if fmt == "jsonl" or mbr or num_samples == 1 else num_samples
    if not path.exists():
        return 0, 0
    complete_bytes, count, offset = 0, 0, 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a line cut off by the interruption
            offset += len(raw)
            count += 1
            if count % per_source == 0:
                complete_bytes = offset
    return count // per_source, complete_bytes
