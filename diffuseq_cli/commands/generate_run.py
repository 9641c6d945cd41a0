"""The glue behind `diffuseq generate`: resolve the model, read input, write output, show progress.

Everything that computes lives in the library (`generate.py`, `generation.py`); this
module only connects files and terminals to it.

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


def load_model(model: str | None, task: str | None, tokenizer: str | None, quiet: bool, device: str = "cpu", heads: int = 12):
    from ..checkpoint import load_model_folder
    from ..hub import resolve_model
    from ..official import load_official

    resolved = resolve_model(model, task=None if model else (task or "paraphrase"), quiet=quiet)
    if resolved.kind == "official":
        loaded = load_official(resolved.path, tokenizer_path=tokenizer, num_heads=heads)
    else:
        loaded = load_model_folder(resolved.path)
    loaded.model.to(device).eval()
    return loaded


def _sources(input: str, input_format: str):
    """Yield source strings; JSONL detected from the first non-empty line when auto (blank JSONL lines are skipped)."""
    from ..generate import parse_source
    from ..textio import iter_lines

    name = "<stdin>" if input == "-" else input
    lines = iter_lines(input)
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


def _count_lines(input: str) -> int | None:
    if input == "-" or not Path(input).is_file():
        return None
    with open(input, "rb") as f:
        return sum(1 for _ in f)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_input(input: str) -> None:
    """Fail before loading the model (and before touching -o) when the input cannot be read."""
    if input == "-":
        return
    p = Path(input)
    if p.is_dir():
        raise UsageError(f"{p}: is a directory, not a text file")
    if not p.exists():
        raise UsageError(f"{p}: no such file")


def run_generate(*, input, output, model, task, tokenizer, num_samples, mbr, mbr_metric, avoid_copy, steps, sampler, length, lengths, seed,
                 rounding, strength, remask, remask_schedule, remask_repeats, dedup, heads=12,
                 batch_size, fmt, input_format, device, precision, resume, quiet):
    from ..generate import GenerateOptions, format_result, generate_stream, lines_done
    from ..generation import SamplingOptions, length_mode, remask_share, sampling_steps, visited_steps

    _check_input(input)
    from ..precision import resolve_device

    device = resolve_device(device)
    from ..precision import resolve_precision

    precision = resolve_precision(precision, device)
    with _status("loading the model", quiet):
        loaded = load_model(model, task, tokenizer, quiet, device, heads)
    T = loaded.config.diffusion.steps
    steps = sampling_steps(SamplingOptions(steps=steps, sampler=sampler), T)
    if not 1 <= steps <= T:
        raise UsageError(f"--steps must be between 1 and the model's T = {T}")
    sampling = SamplingOptions(steps=steps, sampler=sampler, seed=seed, length=length, lengths=lengths, rounding=rounding,
                               strength=strength, remask=remask, remask_schedule=remask_schedule,
                               remask_repeats=remask_repeats, dedup=dedup)
    try:
        if remask:
            remask_share(loaded.config, remask)
        if length_mode(loaded.config, length) != "predict" and lengths is not None and lengths > 1:
            raise ValueError("--lengths needs --length predict (a model with a length head)")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    steps = len(visited_steps(sampling, T))  # fewer than asked when --strength starts below T-1
    if sampler == "ddpm" and steps != T and not quiet:
        print(f"note: ddpm over {steps} of {T} steps uses the respaced schedule", file=sys.stderr)
    opts = GenerateOptions(
        num_samples=num_samples, batch_size=batch_size, mbr=mbr, mbr_metric=mbr_metric, avoid_copy=avoid_copy, sampling=sampling,
        device=device, precision=precision,
    )
    skip, keep_bytes = 0, 0
    out_path = Path(output) if output and output != "-" else None
    if out_path is not None and input != "-" and _same_file(out_path, Path(input)):
        raise UsageError(f"{out_path} is the input file; writing to it would destroy it (choose another -o)")
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
    progress = _Progress(input, skip, quiet or (sink is sys.stdout and sys.stdout.isatty()))
    try:
        for result in generate_stream(loaded, sources, opts, start_line=skip):
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
            progress.advance()
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
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


class _status:
    """A transient spinner with a message on stderr while slow set-up runs (a terminal only)."""

    def __init__(self, message: str, quiet: bool):
        self.message, self.live = message, None
        self.enabled = not quiet and sys.stderr.isatty()

    def __enter__(self):
        if self.enabled:
            from rich.console import Console

            self.live = Console(stderr=True).status(self.message)
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
        return False


class _Progress:
    """A rich progress bar (lines/s, ETA) on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, input: str, done: int, quiet: bool):
        self.bar = None
        if quiet or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            transient=True, console=Console(stderr=True), redirect_stdout=False, redirect_stderr=False)
        # Until the first line is out, say what is happening: the first batch fills and runs.
        self.task = self.bar.add_task("first batch", total=_count_lines(input), completed=done, rate="")
        self.start, self.count = time.perf_counter(), 0
        self.bar.start()

    def advance(self) -> None:
        if self.bar is not None:
            self.count += 1
            rate = self.count / max(time.perf_counter() - self.start, 1e-9)
            self.bar.update(self.task, advance=1, rate=f"{rate:.2f} lines/s", description="generating")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
