"""The glue behind `diffuseq generate`: resolve the model, read input, write output, show progress.

Everything that computes lives in the library (`generation/`); this module only connects
files and terminals to it.

Output files: written as results come, flushed per line, so that an interrupted job
(Ctrl-C, a killed process, a bad input line late in the file) leaves the lines finished so
far for `--resume`, and says how many there are. Bad options and unreadable inputs fail before
the output file is touched; an output file that is the input itself is refused.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import typer

from ..errors import DiffuseqError, UsageError
from ..textio import check_readable, count_lines
from .display import Bar, Spinner, on_terminal, silence_stdout


def load_model(model: str | None, task: str | None, tokenizer: str | None, quiet: bool, device: str = "cpu", heads: int = 12):
    """The model through the Python API's one load path (a folder, a run, an official .pt, the Hub, a task)."""
    from ..api import DiffuSeq

    return DiffuSeq.from_pretrained(model, task=None if model else (task or "paraphrase"), device=device,
                                    tokenizer=tokenizer, num_heads=heads, quiet=quiet).loaded


def _sources(input: str, input_format: str):
    from ..generation.lines import read_sources
    from ..textio import iter_lines

    return read_sources(iter_lines(input), input_format, "<stdin>" if input == "-" else input)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing
        return False


def run_generate(sampling, *, input, output, model, task, tokenizer, heads, num_samples, mbr, mbr_metric, choice,
                 fmt, input_format, device, precision, resume, quiet, nproc=None, gpus=None):
    """``generate`` with its sampling settings (a ``SamplingConfig``) and the run's other options.

    ``choice``: the MBR choice's preferences (``avoid_copy``, ``keep_mood``, ``whole_words``; None: the model's).
    ``nproc``/``gpus``: worker processes (``generation/parallel.py``); None: one process, or the CPU default.
    """
    from ..generation.lines import format_result, lines_done
    from ..generation.parallel import generate_parallel, worker_devices
    from ..generation.stream import GenerateOptions, generate_stream
    from ..precision import resolve_device, resolve_precision

    if input != "-":  # fail before loading the model, and before touching -o
        check_readable(input)
        if output and output != "-" and _same_file(Path(output), Path(input)):
            raise UsageError(f"{Path(output)} is the input file; writing to it would destroy it (choose another -o)")
    devices = worker_devices(device, nproc, gpus)
    parallel = len(devices) > 1 or nproc is not None or gpus is not None
    device = devices[0]
    precision = resolve_precision(precision, device)
    with Spinner("loading the model", quiet):  # workers share the parent's copy, from the CPU
        loaded = load_model(model, task, tokenizer, quiet, "cpu" if parallel else device, heads)
    sampling.check(loaded.config)
    T = loaded.config.diffusion.steps
    steps = len(sampling.visited_steps(loaded.config))  # fewer than asked when --strength starts below T-1
    sampler = sampling.sampler_for(loaded.config)
    if sampler == "ddpm" and steps != T and not quiet:
        print(f"note: ddpm over {steps} of {T} steps uses the respaced schedule", file=sys.stderr)
    opts = GenerateOptions(num_samples=num_samples, mbr=mbr, mbr_metric=mbr_metric, **choice,
                           sampling=sampling, device=device, precision=precision)
    skip, keep_bytes = 0, 0
    out_path = Path(output) if output and output != "-" else None
    if out_path is not None:
        if resume:
            skip, keep_bytes = lines_done(out_path, fmt, num_samples, mbr)
            if out_path.exists():
                os.truncate(out_path, keep_bytes)
        try:
            sink = open(out_path, "a" if resume else "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise DiffuseqError(f"{out_path}: cannot write ({exc.strerror or exc})") from None
    else:
        sink = sys.stdout
    sources = _sources(input, input_format)
    if skip:
        sources = itertools.islice(sources, skip, None)
    lines = candidates = truncated = 0
    start = time.perf_counter()
    # A bar only where it does not fight the output for the terminal.
    progress = _progress_bar(input, skip, not on_terminal(quiet) or (sink is sys.stdout and sys.stdout.isatty()))
    shown = time.perf_counter()
    try:
        results = (generate_parallel(loaded, sources, opts, devices, start_line=skip) if parallel
                   else generate_stream(loaded, sources, opts, start_line=skip))
        for result in results:
            try:
                sink.write(format_result(result, fmt, num_samples, mbr))
                sink.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:  # a full disk, a file that takes no writes
                raise DiffuseqError(f"{output}: cannot write ({exc.strerror or exc})") from None
            lines += 1
            candidates += len(result.candidates)
            truncated += result.truncated
            rate = lines / max(time.perf_counter() - shown, 1e-9)
            progress.update(advance=1, rate=f"{rate:.2f} lines/s", description="generating")
    except BrokenPipeError:  # the reader went away (`| head -1`): stop quietly
        silence_stdout()
        raise typer.Exit(0)
    except DiffuseqError as exc:
        if out_path is not None and lines + skip:  # keep every finished line: --resume continues after the fix
            exc.note = (f"{skip + lines} finished lines are in {out_path}; fix the problem and add --resume to "
                        "continue after them")
        raise
    except KeyboardInterrupt:
        if out_path is not None and not quiet:
            print(f"interrupted: {skip + lines} lines are in {out_path}; add --resume to continue", file=sys.stderr)
        raise
    finally:
        progress.close()
        if sink is not sys.stdout:
            try:
                sink.close()
            except OSError:
                pass  # already reported by the write that failed
    seconds = time.perf_counter() - start
    if truncated:
        print(f"warning: {truncated} source line(s) longer than the model's sequence were truncated", file=sys.stderr)
    if not quiet:
        rate = lines / seconds if seconds > 0 else 0.0
        print(
            f"generated {lines} lines, {candidates} candidates, {steps} {sampler} steps, "
            f"{seconds:.1f} s, {rate:.2f} lines/s",
            file=sys.stderr,
        )


def _progress_bar(input: str, done: int, quiet: bool):
    """A bar (lines/s, ETA) on a terminal's stderr; until the first line is out it says the first
    batch is filling and running."""
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeRemainingColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    total = None if quiet else count_lines(input)  # reads the file once more: only for a bar
    return Bar(columns, enabled=not quiet, description="first batch", total=total, completed=done, rate="")
