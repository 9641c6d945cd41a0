"""``generate --nproc N`` / ``--gpus N``: one input spread over several workers, one output
byte-identical to one process's.

The parent reads the input and hands out consecutive chunks of lines (as many as one process
keeps pending, ``GenerateOptions.window``) to the workers: worker 0 is a thread of the parent on
the model it has loaded, the others are processes, started once there is more than one chunk of
work (a short input costs no start-up), that get the model through shared memory
(``torch.multiprocessing``) on their own device. CPU workers run one
thread each unless ``OMP_NUM_THREADS`` (``--threads``) says more. A worker runs a chunk through
``generate_stream`` with the lines numbered from the chunk's first, so every candidate draws its
noise from (seed, line, candidate) as in one process, and batches never change a row's result
(``batches``): the lines come out as one process writes them.

The parent yields each line as soon as it and every line before it are done: the first lines
come out while later chunks are sampled. At most two chunks per worker are out or waiting for
an earlier one at a time, so memory stays flat. When the input turns out bad, the lines before
the bad one are finished and yielded, then its error is raised; Ctrl-C and a closed output end
the workers, and so does the parent's death (``processes.die_with_parent``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from multiprocessing.reduction import ForkingPickler
from typing import Iterable, Iterator

import torch
import torch.multiprocessing  # registers the reducers that send tensors as shared memory (ForkingPickler)

from ..errors import DiffuseqError, FieldError, at_least
from ..modelfiles.folder import LoadedModel
from ..precision import check_gpus, resolve_device
from ..processes import die_with_parent
from ..threads import usable_cpus
from .config import CPU_PROCESSES
from .stream import _END, GenerateOptions, LineResult, _Reader, generate_stream

CHUNKS_PER_WORKER = 2  # out at once: one sampled, one waiting, so a worker never idles between chunks
POLL_SECONDS = 0.02  # how often the parent looks at the input and the results while both are quiet
THREAD_STOP_SECONDS = 60.0  # at most this long for worker 0 (a thread) to reach its next result when stopped
READY_SECONDS = 10.0  # at most this long for a starting worker to finish receiving the model when stopped


def worker_devices(device: str, nproc: int | None = None, gpus: tuple[int, ...] | None = None) -> list[str]:
    """One torch device per worker: ``gpus`` (one per listed GPU) or ``nproc`` on ``device``.

    ``nproc`` None: one, or on a CPU one per usable core (at most ``config.CPU_PROCESSES``).
    """
    if gpus:
        if device == "cpu":
            raise FieldError("{gpus} and {device} cpu contradict each other")
        if nproc is not None:
            raise FieldError("{gpus} and {nproc} contradict each other: one process runs on each listed GPU")
        check_gpus(gpus)
        return [f"cuda:{i}" for i in gpus]
    at_least("nproc", nproc)
    resolved = resolve_device(device)
    if nproc is None:
        nproc = min(usable_cpus(), CPU_PROCESSES) if resolved == "cpu" else 1
    return [resolved] * nproc


@dataclass
class _Chunk:
    results: deque = field(default_factory=deque)  # LineResults come in order; they wait here for their turn
    complete: bool = False


class _Worker:
    """A worker: worker 0 is a thread of this process on the model it holds (no start-up, no copy);
    the others are processes. ``out`` holds the ids of its chunks not yet complete."""

    def __init__(self, handle, inbox, stopped: threading.Event | None = None, ready=None):
        self.handle, self.inbox, self.stopped = handle, inbox, stopped
        self.ready = ready  # a process's: set once it holds the model (None for worker 0)
        self.out: deque = deque()
        self.served = 0  # chunks handed to it

    def dead(self) -> int | None:
        """A process's exit code once it has ended (a thread reports its failures through the results)."""
        return getattr(self.handle, "exitcode", None)

    def stop(self) -> None:
        if self.stopped is not None:
            self.stopped.set()
        try:
            self.inbox.put(None)
        except (OSError, ValueError):
            pass


def generate_parallel(
    loaded: LoadedModel, lines: Iterable[str], opts: GenerateOptions, devices: list[str], start_line: int = 0,
) -> Iterator[LineResult]:
    """Yield one LineResult per input line, in input order, as ``generate_stream`` would, sampled by
    one worker per entry of ``devices`` (``worker_devices``): the first a thread of this process,
    the others processes. ``loaded`` is on the CPU (it moves to ``devices[0]``)."""
    opts.sampling.check(loaded.config)
    ctx = torch.multiprocessing.get_context("spawn")
    threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    results = ctx.Queue()
    # The model for each other worker, as handles to shared memory, taken now: from the CPU, before it
    # moves to worker 0's device.
    payloads = [(rank, bytes(ForkingPickler.dumps((loaded, replace(opts, device=device)))))
                for rank, device in enumerate(devices[1:], start=1)]

    def start_others() -> list[_Worker]:
        started = []
        with _sigint_ignored():  # inherited through exec: a Ctrl-C never interrupts a worker, even while it starts
            for rank, payload in payloads:
                inbox, ready = ctx.Queue(), ctx.Event()
                process = ctx.Process(target=_work, args=(inbox, results, os.getpid(), ready), daemon=True,
                                      name=f"diffuseq-generate-{rank}")
                process.start()
                inbox.put(payload)  # not through start(): it would wait until the new process had imported torch
                started.append(_Worker(process, inbox, ready=ready))
        payloads.clear()
        return started

    workers: list[_Worker] = []
    threads_before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        inbox, stopped = queue.Queue(), threading.Event()
        # Until the others start, worker 0 is the only one working: on a CPU it takes their threads too
        # (an input of one chunk, e.g. 200 lines with -n 1, would otherwise run on one core of two).
        solo = threads * len(devices) if all(d == "cpu" for d in devices) else threads
        thread = threading.Thread(target=_serve, args=(loaded, replace(opts, device=devices[0]), inbox, results, stopped),
                                  daemon=True, name="diffuseq-generate-0")
        thread.start()
        workers.append(_Worker(thread, inbox, stopped))
        yield from _schedule(lines, opts, workers, start_others if payloads else None, results, start_line,
                             (threads, solo))
    finally:
        _stop(workers)
        torch.set_num_threads(threads_before)


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


def _schedule(lines, opts: GenerateOptions, workers: list[_Worker], start_others, results,
              start_line: int, threads: tuple[int, int]) -> Iterator[LineResult]:
    """The parent's loop: read lines into chunks, hand them out, put the results back in order.

    ``start_others()`` starts the other workers: called when a chunk is ready and every worker has
    one already (an input of one chunk, such as one line, costs no start-up). ``threads``: a
    worker's threads, and worker 0's while it is the only one (each chunk says which)."""
    size = opts.window  # lines per chunk: as many as one process keeps unfinished
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
            ready = buffer and (len(buffer) >= size or ended or time.monotonic() - since >= opts.flush_seconds)
            if ready and start_others is not None and all(w.out for w in workers):
                workers.extend(start_others())
                start_others = None
            free = sorted((w for w in workers if len(w.out) < CHUNKS_PER_WORKER and room), key=lambda w: len(w.out))
            # A full chunk goes to the least busy worker; the lines left when the input ends or stalls
            # are shared among the free workers (a short input still uses them all).
            if ready and free:
                parts = 1 if len(buffer) >= size else min(len(free), len(buffer), CHUNKS_PER_WORKER * len(workers) - len(chunks))
                cut = [len(buffer) * i // parts for i in range(parts + 1)]
                for worker, lo, hi in zip(free, cut, cut[1:]):
                    chunks[next_chunk] = _Chunk()
                    alone = len(workers) == 1  # worker 0, the others not started
                    worker.inbox.put((next_chunk, next_line, buffer[lo:hi], threads[alone]))
                    worker.out.append(next_chunk)
                    worker.served += 1
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
    """Sleep a moment (nothing came in: no line, no result); a worker process that died is an error."""
    for rank, worker in enumerate(workers):
        if worker.dead() is not None:
            raise DiffuseqError(f"generate worker {rank} ended unexpectedly (exit code {worker.dead()})")
    time.sleep(POLL_SECONDS)


def _stop(workers: list[_Worker]) -> None:
    """End the workers: ask, give the processes a moment, then terminate them (one never given a
    chunk at once). A process still receiving the model is let finish first: ended in the middle,
    it leaves this process's sharing thread (multiprocessing's resource sharer) a traceback to print."""
    for worker in workers:
        worker.stop()
        if hasattr(worker.inbox, "cancel_join_thread"):  # a process's queue: never wait to flush it
            worker.inbox.cancel_join_thread()
    deadline = time.monotonic() + 1.0
    for worker in workers:
        process = worker.handle
        if isinstance(process, threading.Thread):
            # It stops at its next result: wait for that, since a thread still inside torch when the
            # interpreter exits can abort it (OpenMP's pool torn down under it).
            process.join(timeout=THREAD_STOP_SECONDS)
            continue
        limit = time.monotonic() + READY_SECONDS
        while worker.ready is not None and process.is_alive() and time.monotonic() < limit:
            if worker.ready.wait(timeout=POLL_SECONDS):
                break
        if worker.served:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)


def _place(loaded: LoadedModel, device: str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    loaded.model.to(device)


def _work(inbox, results, parent: int, ready) -> None:
    """A worker process: the model and options (its first message), then ``_serve``."""
    die_with_parent(parent)
    loaded, opts = pickle.loads(inbox.get())
    ready.set()
    _serve(loaded, opts, inbox, results)


def _serve(loaded: LoadedModel, opts: GenerateOptions, inbox, results, stopped: threading.Event | None = None) -> None:
    """The worker's device, then chunks in (each with the threads to sample it with), LineResults
    out and ``None`` for a finished chunk; a failure goes out as ``(None, error)``."""
    try:
        _place(loaded, opts.device)
        halted = stopped.is_set if stopped is not None else (lambda: False)
        while (task := inbox.get()) is not None and not halted():
            chunk, first, texts, threads = task
            torch.set_num_threads(threads)  # per thread too: OpenMP's thread count is a thread's own setting
            for result in generate_stream(loaded, texts, opts, start_line=first):
                if halted():
                    return
                results.put((chunk, result))
            results.put((chunk, None))
    except BaseException as exc:  # noqa: BLE001: sent to the parent, which raises it as one clean line
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
