"""``generate --nproc N`` / ``--gpus N``: one input spread over several processes, one output
byte-identical to one process's.

The parent reads the input and hands out consecutive chunks of lines (as many as one process
keeps pending, ``stream.GenerateOptions``) to worker processes that each hold the model on
their device; CPU workers run one thread each unless ``OMP_NUM_THREADS`` (``--threads``) says
more. A worker runs a chunk through ``generate_stream`` with the lines numbered from the chunk's
first, so every candidate draws its noise from (seed, line, candidate) as in one process, and
batches never change a row's result (``batches``): the lines come out as one process writes them.

The parent yields each line as soon as it and every line before it are done: the first lines
come out while later chunks are sampled. At most two chunks per worker are out or waiting for
an earlier one at a time, so memory stays flat. When the input turns out bad, the lines before the bad one are finished and
yielded, then its error is raised; Ctrl-C and a closed output end the workers, and so does the
parent's death (``processes.die_with_parent``). The model goes to the workers through shared
memory (``torch.multiprocessing``), not loaded again.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import torch

from ..errors import DiffuseqError, FieldError
from ..modelfiles.folder import LoadedModel
from ..precision import check_gpus, resolve_device
from ..processes import die_with_parent
from ..threads import usable_cpus
from .stream import _END, GenerateOptions, LineResult, _Reader, generate_stream

CHUNKS_PER_WORKER = 2  # out at once: one sampled, one waiting, so a worker never idles between chunks
POLL_SECONDS = 0.02  # how often the parent looks at the input and the results while both are quiet


def worker_devices(device: str, nproc: int | None = None, gpus: tuple[int, ...] | None = None) -> list[str]:
    """One torch device per worker process: ``gpus`` (one process per listed GPU) or ``nproc`` on ``device``.

    ``nproc`` None: one process, or on a CPU one per usable core (at most ``MAX_CPU_PROCESSES``).
    """
    if gpus:
        if device == "cpu":
            raise FieldError("{gpus} and {device} cpu contradict each other")
        if nproc is not None:
            raise FieldError("{gpus} and {nproc} contradict each other: one process runs on each listed GPU")
        check_gpus(gpus)
        return [f"cuda:{i}" for i in gpus]
    if nproc is not None and nproc < 1:
        raise FieldError(f"{{nproc}} must be positive, got {nproc}")
    resolved = resolve_device(device)
    if nproc is None:
        nproc = min(usable_cpus(), MAX_CPU_PROCESSES) if resolved == "cpu" else 1
    return [resolved] * nproc


MAX_CPU_PROCESSES = 1  # the CPU default's cap (docs/benchmarks.md, "Processes")


def chunk_lines(opts: GenerateOptions) -> int:
    """Lines per chunk: as many as one process keeps unfinished (``generate_stream``'s window)."""
    n = opts.num_samples
    batch = max(n, opts.sampling.batch_size // n * n)
    return opts.max_pending or max(4 * batch // n, 8)


@dataclass
class _Chunk:
    first: int  # its first line's number
    lines: int
    results: deque = field(default_factory=deque)  # LineResults come in order; they wait here for their turn
    complete: bool = False


@dataclass
class _Worker:
    process: object
    inbox: object
    out: deque = field(default_factory=deque)  # ids of its chunks not yet complete


def generate_parallel(
    loaded: LoadedModel, lines: Iterable[str], opts: GenerateOptions, devices: list[str], start_line: int = 0,
) -> Iterator[LineResult]:
    """Yield one LineResult per input line, in input order, as ``generate_stream`` would, sampled by
    one worker process per entry of ``devices`` (``worker_devices``). ``loaded`` is on the CPU."""
    opts.sampling.check(loaded.config)
    ctx = torch.multiprocessing.get_context("spawn")
    threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    results = ctx.Queue()
    workers = []
    try:
        with _sigint_ignored():  # inherited through exec: a Ctrl-C never interrupts a worker, even while it starts
            for rank, device in enumerate(devices):
                inbox = ctx.Queue()
                args = (loaded, replace(opts, device=device), threads, inbox, results, os.getpid())
                process = ctx.Process(target=_work, args=args, daemon=True, name=f"diffuseq-generate-{rank}")
                process.start()
                workers.append(_Worker(process, inbox))
        yield from _schedule(lines, opts, workers, results, start_line)
    finally:
        _stop(workers)


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored while workers start (the parent's Ctrl-C ends them); a no-op off the main thread."""
    try:
        before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _schedule(lines, opts: GenerateOptions, workers: list[_Worker], results, start_line: int) -> Iterator[LineResult]:
    """The parent's loop: read lines into chunks, hand them out, put the results back in order."""
    size = chunk_lines(opts)
    reader = _Reader(lines, maxsize=max(2 * size, 64))
    chunks: dict[int, _Chunk] = {}
    buffer: list[str] = []
    since = 0.0  # when the buffer's first line was read
    next_line, next_chunk, emit = start_line, 0, 0
    failure: BaseException | None = None
    ended = False
    try:
        while True:
            progressed = False
            while True:  # results that have come in
                try:
                    chunk, item = results.get_nowait()
                except queue.Empty:
                    break
                progressed = True
                if chunk is None:
                    raise item
                if item is None:
                    chunks[chunk].complete = True
                    next(w for w in workers if w.out and w.out[0] == chunk).out.popleft()
                else:
                    chunks[chunk].results.append(item)
            while not ended and len(buffer) < size:  # lines that have come in
                try:
                    item = reader.queue.get_nowait()
                except queue.Empty:
                    break
                progressed = True
                if item is _END or isinstance(item, BaseException):
                    ended, failure = True, (item if item is not _END else None)
                else:
                    since = since if buffer else time.monotonic()
                    buffer.append(item)
            # Chunks out and chunks done but waiting for an earlier one count alike: memory stays bounded
            # even when one worker falls behind the others.
            room = CHUNKS_PER_WORKER * len(workers) > len(chunks)
            free = sorted((w for w in workers if len(w.out) < CHUNKS_PER_WORKER and room), key=lambda w: len(w.out))
            # A full chunk goes to the least busy worker; the lines left when the input ends or stalls
            # are shared among the free workers (a short input still uses them all).
            if buffer and free and (len(buffer) >= size or ended or time.monotonic() - since >= opts.flush_seconds):
                parts = 1 if len(buffer) >= size else min(len(free), len(buffer), CHUNKS_PER_WORKER * len(workers) - len(chunks))
                cut = [len(buffer) * i // parts for i in range(parts + 1)]
                for worker, lo, hi in zip(free, cut, cut[1:]):
                    chunks[next_chunk] = _Chunk(next_line, hi - lo)
                    worker.inbox.put((next_chunk, next_line, buffer[lo:hi]))
                    worker.out.append(next_chunk)
                    next_line += hi - lo
                    next_chunk += 1
                buffer = []
                progressed = True
            while emit in chunks:  # lines whose turn it is
                current = chunks[emit]
                while current.results:
                    yield current.results.popleft()
                if not current.complete:
                    break
                del chunks[emit]
                emit += 1
            if ended and not buffer and not chunks:
                if failure is not None:
                    raise failure
                return
            if not progressed:
                _wait(workers)
    finally:
        reader.stop()


def _wait(workers: list[_Worker]) -> None:
    """Sleep a moment (nothing came in: no line, no result); a worker that died is an error."""
    for rank, worker in enumerate(workers):
        if worker.process.exitcode is not None:
            raise DiffuseqError(f"generate worker {rank} ended unexpectedly (exit code {worker.process.exitcode})")
    time.sleep(POLL_SECONDS)


def _stop(workers: list[_Worker]) -> None:
    """End the workers: ask, then wait briefly (they finish nothing more), then terminate."""
    for worker in workers:
        try:
            worker.inbox.put(None)
            worker.inbox.cancel_join_thread()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 1.0
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(timeout=5)


def _work(loaded: LoadedModel, opts: GenerateOptions, threads: int, inbox, results, parent: int) -> None:
    """A worker process: chunks in, LineResults out, then ``None`` for a finished chunk."""
    die_with_parent(parent)
    torch.set_num_threads(threads)
    try:
        device = torch.device(opts.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        loaded.model.to(device)
        while (task := inbox.get()) is not None:
            chunk, first, texts = task
            for result in generate_stream(loaded, texts, opts, start_line=first):
                results.put((chunk, result))
            results.put((chunk, None))
    except BaseException as exc:  # sent to the parent, which raises it as one clean line
        results.put((None, _portable(exc)))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a DiffuseqError that says what it was."""
    if isinstance(exc, DiffuseqError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:  # noqa: BLE001: any failure to round-trip means "send text instead"
            pass
    return DiffuseqError(f"generate worker failed: {type(exc).__name__}: {exc}")
