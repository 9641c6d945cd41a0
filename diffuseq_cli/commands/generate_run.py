"""The glue behind `diffuseq generate`: resolve the model, read input, write output, show progress.

Everything that computes lives in the library (`generation/`); this module only connects
files and terminals to it.

What fails, fails before the model loads, where it can: options, an input that is missing,
an input file with a bad line anywhere (a regular file is read through once first, so no work
is done in vain), an output that cannot be written or is the input itself, and a `--resume`
whose options do not match the file. Output files come into being with their first finished
line (`generation/output.py`) and are flushed per line, so that an interrupted job (Ctrl-C, a
killed process, a full disk) leaves the lines finished so far for `--resume`, and says how many.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from ..errors import DiffuseqError
from ..textio import check_readable, check_writable, rereadable
from .display import Bar, Spinner, on_terminal, reader_gone, silence_stdout


def load_model(model: str | None, task: str | None, tokenizer: str | None, quiet: bool, device: str = "cpu", heads: int = 12):
    """The model through the Python API's one load path (a folder, a run, an official .pt, the Hub, a task)."""
    from ..api import DiffuSeq

    return DiffuSeq.from_pretrained(model, task=None if model else (task or "paraphrase"), device=device,
                                    tokenizer=tokenizer, num_heads=heads, quiet=quiet).loaded


def _sources(input: str, input_format: str):
    from ..generation.lines import read_sources
    from ..textio import iter_lines

    return read_sources(iter_lines(input), input_format, "<stdin>" if input == "-" else input)


def _check_input(input: str, input_format: str) -> int | None:
    """Read a regular input file through once: a bad line anywhere is an error now, before the model
    loads. Returns its number of sources (None for stdin, a pipe or a device, read only once)."""
    if not rereadable(input):
        return None
    return sum(1 for _ in _sources(input, input_format))


@dataclass
class _Tally:
    """What the summary line reports."""

    lines: int = 0
    blank: int = 0  # passed through as blank lines, not sampled
    candidates: int = 0
    truncated: int = 0

    def add(self, result) -> None:
        self.lines += 1
        self.blank += result.blank
        self.candidates += 0 if result.blank else len(result.candidates)
        self.truncated += result.truncated


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_generate(sampling, *, input, output, model, task, tokenizer, heads, num_samples, mbr, mbr_metric, choice,
                 fmt, input_format, device, precision, resume, quiet, nproc=None, gpus=None):
    """``generate`` with its sampling settings (a ``SamplingConfig``) and the run's other options.

    ``choice``: the MBR choice's preferences (``avoid_copy``, ``keep_mood``, ``whole_words``; None: the model's).
    ``nproc``/``gpus``: worker processes (``generation/parallel.py``); None: one process, or the CPU default.
    """
    from ..generation.lines import format_result
    from ..generation.output import OutputShape, ResultFile

    if input != "-":
        check_readable(input)
    check_writable(output, inputs=[input])
    results = None  # all of this before torch loads, so that an error comes at once
    if output and output != "-":
        results = ResultFile(Path(output), OutputShape(fmt, num_samples, mbr), resume)
        if results.note:
            print(results.note, file=sys.stderr)
    skip = results.kept if results else 0
    total = _check_input(input, input_format)
    from ..generation.parallel import generate_parallel, worker_devices
    from ..generation.stream import GenerateOptions, generate_stream
    from ..precision import resolve_precision

    devices = worker_devices(device, nproc, gpus)
    parallel = len(devices) > 1 or nproc is not None or gpus is not None
    device = devices[0]
    precision = resolve_precision(precision, device)
    opts = GenerateOptions(num_samples=num_samples, mbr=mbr, mbr_metric=mbr_metric, **choice,
                           sampling=sampling, device=device, precision=precision)
    with Spinner("loading the model", quiet):  # workers share the parent's copy, from the CPU
        loaded = load_model(model, task, tokenizer, quiet, "cpu" if parallel else device, heads)
    sampling.check(loaded.config)
    T = loaded.config.diffusion.steps
    steps = len(sampling.visited_steps(loaded.config))  # fewer than asked when --strength starts below T-1
    sampler = sampling.sampler_for(loaded.config)
    if sampler == "ddpm" and steps != T and not quiet:
        print(f"note: ddpm over {steps} of {T} steps uses the respaced schedule", file=sys.stderr)
    sources = _sources(input, input_format)
    if skip:
        sources = itertools.islice(sources, skip, None)
    tally = _Tally()
    start = time.perf_counter()
    progress = _progress_bar(total, skip, enabled=on_terminal(quiet))
    calls = 0  # model calls so far: the work the ETA counts (bench/eta_generate.py says why)

    def on_batch(candidates: int, calls_left: int | None) -> None:
        nonlocal calls
        calls += 1
        progress.update(eta=eta_text(calls, calls_left, time.perf_counter() - start))

    def write(text: str) -> None:
        if results is not None:
            results.write(text)
            return
        try:
            progress.write_above(sys.stdout, text)
        except BrokenPipeError:
            raise
        except OSError as exc:  # a full disk, a device that takes no writes
            silence_stdout()  # so that the exit does not fail again on the buffered rest
            raise DiffuseqError(f"<stdout>: cannot write ({exc.strerror or exc})") from None

    try:
        if parallel:  # the workers' batches are their own: the ETA counts lines, shown from ETA_AFTER_LINES
            results_in = generate_parallel(loaded, sources, opts, devices, start_line=skip)
        else:
            results_in = generate_stream(loaded, sources, opts, start_line=skip, on_batch=on_batch)
        for result in results_in:
            write(format_result(result, fmt, num_samples, mbr))
            tally.add(result)
            elapsed = time.perf_counter() - start
            rate = tally.lines / max(elapsed, 1e-9)
            eta = ({} if not parallel or total is None
                   else {"eta": eta_text(tally.lines, total - skip - tally.lines, elapsed, after=ETA_AFTER_LINES)})
            progress.update(advance=1, description="generating", rate=f"{rate:.2f} lines/s", **eta)
        if results is not None:
            results.finish()
    except BrokenPipeError:  # the reader went away (`| head -1`): stop quietly
        silence_stdout()
        raise typer.Exit(0)
    except DiffuseqError as exc:
        if results is not None and tally.lines + skip:  # every finished line is kept: --resume continues after them
            exc.note = (f"{skip + tally.lines} finished lines are in {results.path}; fix the problem and add --resume "
                        "to continue after them")
        raise
    except KeyboardInterrupt:
        if results is not None and tally.lines + skip and not quiet:  # before the first line, -o was not touched
            print(f"interrupted: {skip + tally.lines} finished lines are in {results.path}; add --resume to continue",
                  file=sys.stderr)
        raise
    finally:
        progress.close()
        if results is not None:
            results.close()
    if results is None and reader_gone():  # `| head -1` took what it wanted after the last line: end quietly
        silence_stdout()
        return
    seconds = time.perf_counter() - start
    if tally.truncated:
        print(f"warning: {tally.truncated} source line(s) longer than the model's sequence were truncated", file=sys.stderr)
    if not quiet:
        blank = f" ({tally.blank} blank, passed through as blank lines)" if tally.blank else ""
        rate = tally.lines / seconds if seconds > 0 else 0.0
        print(f"generated {_count(tally.lines, 'line')}{blank}, {_count(tally.candidates, 'candidate')}, "
              f"{steps} {sampler} steps, {seconds:.1f} s, {rate:.2f} lines/s", file=sys.stderr)


# The ETA counts model calls: lines come out in input order, most of them in bursts late in the
# job, and a call costs about the same on a CPU whether it holds 1 line or 16 (the batches of
# rarer lengths, run last, are small). bench/eta_generate.py measured each way of counting
# (docs/data/eta-generate-*.json). The number of calls left is known once the input is read;
# the ETA appears once this share of the calls is done, before which the first calls (with the
# warm-up) say little.
ETA_AFTER = 0.2
# With several workers (the CPU default) only lines out can be counted, and each worker's chunk
# comes out in a burst once its sorted batches are done: from lines, the ETA said 3.2-4.7 times
# the real rest at a fifth of the job and 1.3-1.8 times at half (docs/data/eta-generate-nproc2-*.json).
ETA_AFTER_LINES = 0.5


def eta_text(done: int, left: int | None, elapsed: float, after: float = ETA_AFTER) -> str:
    """``ETA m:ss`` from the average time per unit of work (a model call, or a line) so far, once
    ``left`` is known and the share ``after`` of the work is done; else ""."""
    if left is None or done < 1 or done < after * (done + left):
        return ""
    seconds = round(elapsed / done * left)
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


def _progress_bar(total: int | None, done: int, enabled: bool) -> Bar:
    """A status line on a terminal's stderr (spinner, count, lines/s, ETA), below the output when
    that goes to the same terminal; until the first line is out it says the first batch is running."""
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"))
    return Bar(columns, enabled=enabled, description="first batch", total=total, completed=done, rate="", eta="")
