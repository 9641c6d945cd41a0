"""``diffuseq generate``: stream source lines through sampling, in input order, with optional MBR.

Lines are read by a background thread into a bounded queue, so that batches can be formed
while the input is still arriving:

* a line waits in a bucket of lines of its sequence length until the bucket holds a full
  batch; when the input stalls (nothing to read) and the oldest waiting line has waited
  ``flush_seconds``, every bucket runs as it is. With stdin held open, the first line's
  output therefore appears about ``flush_seconds`` after it was written, not at the end;
* memory stays flat: the queue is bounded, and when ``max_pending`` lines are unfinished,
  the bucket holding the oldest one runs even if it is not full, so that the lines
  finished behind it can be written out.

Results come out in input order; which lines share a batch never changes them
(``generation`` explains why). When the input ends or stalls, the waiting buckets run oldest line
first, and lines go out as they finish. A line that cannot be read (bad bytes, bad JSON) ends
the stream with its error, after every line before it is finished and out.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from ..config import PRECISIONS
from ..core.diffusion import Diffusion
from ..errors import FieldError, at_least, literal
from ..evaluation.choice import Preferences, choose
from ..evaluation.mbr import MBROutput, get_utility, mbr_select
from ..modelfiles.folder import LoadedModel
from .batches import decode_rows, sample_jobs
from .config import SamplingConfig
from .jobs import Job, candidate_seed, model_device, prepare


@dataclass(frozen=True)
class GenerateOptions:
    num_samples: int = 1
    mbr: bool = False
    mbr_metric: str = "bleu"
    avoid_copy: bool | None = None  # with mbr: the best candidate that is not the source itself; None: the model's
    keep_mood: bool | None = None  # with mbr: questions stay questions, statements statements; None: the model's
    whole_words: bool | None = None  # with mbr: the fewest made-up words (evaluation/choice.py); None: the model's
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # its batch_size is rounded down to whole lines
    device: str | None = None  # None: where the model's weights are
    precision: str = "fp32"
    flush_seconds: float = 0.5  # when the input stalls, run partial batches once the oldest line waited this long
    max_pending: int = 0  # unfinished lines held at most (0: 4 batches' worth, at least 8)

    def __post_init__(self):
        at_least("num_samples", self.num_samples)
        if self.precision not in PRECISIONS:
            raise FieldError(f"{{precision}} must be fp32, bf16 or fp16, got {literal(repr(self.precision))}")
        if self.mbr:
            get_utility(self.mbr_metric)

    @property
    def batch(self) -> int:
        """Candidates per model call, in whole lines: all n candidates of a line in one call."""
        return max(self.num_samples, self.sampling.batch_size // self.num_samples * self.num_samples)

    @property
    def window(self) -> int:
        """Unfinished lines held at most: ``max_pending``, else 4 batches' worth, at least 8."""
        return self.max_pending or max(4 * self.batch // self.num_samples, 8)


def preferences(loaded: LoadedModel, opts: GenerateOptions) -> Preferences:
    """What MBR's choice should also be: ``opts``' settings, else the model's own (config.json "decoding")."""
    own = loaded.config.decoding
    pick = lambda given, default: default if given is None else given  # noqa: E731
    return Preferences(avoid_copy=pick(opts.avoid_copy, own.avoid_copy), keep_mood=pick(opts.keep_mood, own.keep_mood),
                       whole_words=pick(opts.whole_words, own.whole_words),
                       is_word=functools.lru_cache(maxsize=65536)(loaded.tokenizer.is_word))


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

    @property
    def blank(self) -> bool:
        """An empty (or whitespace-only) source: passed through as empty candidates, not sampled."""
        return not self.source.strip()


_END = object()


class _Reader:
    """Iterate ``lines`` on a daemon thread into a bounded queue; exceptions travel through the queue."""

    def __init__(self, lines: Iterable[str], maxsize: int):
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(lines,), daemon=True, name="diffuseq-reader").start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, lines: Iterable[str]) -> None:
        try:
            for text in lines:
                if not self._put(text):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def stop(self) -> None:
        self._stop.set()


def generate_stream(
    loaded: LoadedModel,
    lines: Iterable[str],
    opts: GenerateOptions,
    start_line: int = 0,
    on_batch: Callable[[int, int | None], None] | None = None,
) -> Iterator[LineResult]:
    """Yield one LineResult per input line, in input order; lines are numbered from ``start_line``.

    An empty (or whitespace-only) line is not sampled: its candidates are empty strings.
    ``on_batch(candidates, batches_left)`` is called after each model call with the candidates it
    sampled and, once the whole input is read, the model calls still to come (None before): what
    an ETA can count, since on a CPU a call costs about the same whether it holds 1 line or 16.
    Device: ``opts.device``, or where the model is; the model must already be there.
    """
    opts.sampling.check(loaded.config)
    device = torch.device(opts.device) if opts.device else model_device(loaded)
    diffusion = Diffusion(loaded.config.diffusion)
    n = opts.num_samples
    batch, max_pending = opts.batch, opts.window
    prefs = preferences(loaded, opts)

    buckets: dict[int, list[tuple[Job, int]]] = defaultdict(list)  # length -> (job, k) waiting, oldest first
    arrived: dict[int, float] = {}  # line -> when it was read (for lines waiting in a bucket)
    sources: dict[int, str] = {}
    jobs: dict[int, Job] = {}
    done: dict[int, list[str | None]] = {}
    next_line = next_emit = start_line
    input_read = False  # the whole input is in: the buckets hold all the work left

    def run(length: int) -> None:
        work, rest = buckets[length][:batch], buckets[length][batch:]
        if rest:
            buckets[length] = rest
        else:
            del buckets[length]
        rows = sample_jobs(loaded, diffusion, [j for j, _ in work], [k for _, k in work], opts.sampling, device, opts.precision)
        for (job, k), text in zip(work, decode_rows(loaded, rows, opts.sampling)):
            done[job.line][k] = text
            arrived.pop(job.line, None)
        if on_batch:
            on_batch(len(work), sum(-(-len(b) // batch) for b in buckets.values()) if input_read else None)

    def run_all() -> Iterator[LineResult]:
        """Every waiting candidate, the bucket of the oldest line first, each line out as soon as
        it and those before it are done (so the first lines, and `| head`, need not wait for all)."""
        while buckets:
            run(min(buckets, key=lambda L: buckets[L][0][0].line))
            yield from ready()

    def deadline() -> float:
        return min(arrived[b[0][0].line] for b in buckets.values()) + opts.flush_seconds

    def ready() -> Iterator[LineResult]:
        nonlocal next_emit
        while next_emit in done and all(c is not None for c in done[next_emit]):
            line = next_emit
            cands: list[str] = done.pop(line)  # type: ignore[assignment]
            job = jobs.pop(line, None)
            result = LineResult(
                line=line, source=sources.pop(line), candidates=cands,
                seeds=[candidate_seed(opts.sampling.seed, line, k) for k in range(n)],
                truncated=bool(job and job.truncated),
            )
            if opts.mbr and n > 1:
                result.mbr = choose(mbr_select(cands, opts.mbr_metric), cands, result.source, prefs)
            next_emit += 1
            yield result

    reader = _Reader(lines, maxsize=max(2 * batch, 64))
    try:
        while True:
            try:
                item = reader.queue.get_nowait()
            except queue.Empty:
                # The input stalls: wait for it, but not past the oldest waiting line's deadline.
                wait = None if not buckets else deadline() - time.monotonic()
                try:
                    if wait is not None and wait <= 0:
                        raise queue.Empty
                    item = reader.queue.get(timeout=wait)
                except queue.Empty:
                    yield from run_all()
                    continue
            if item is _END:
                input_read = True
                yield from run_all()
                return
            if isinstance(item, BaseException):  # a bad line: first finish every line before it
                yield from run_all()
                raise item
            line, next_line = next_line, next_line + 1
            sources[line] = item
            if not item.strip():
                done[line] = [""] * n  # an empty line passes through as empty candidates
            else:
                job = prepare(loaded, [item], line, opts.sampling)[0]
                jobs[line] = job
                done[line] = [None] * n
                arrived[line] = time.monotonic()
                for k in range(n):  # with a length beam, a line's candidates go to several buckets
                    buckets[job.length_of(k)].append((job, k))
                for length in job.lengths:  # unique (generation.jobs)
                    if len(buckets.get(length, ())) >= batch:
                        run(length)
            yield from ready()
            while len(done) > max_pending:
                oldest = jobs.get(next_emit)
                waiting = [L for L in (oldest.lengths if oldest else ()) if L in buckets]
                if not waiting:
                    break
                run(waiting[0])
                yield from ready()
    finally:
        reader.stop()
