"""Rendering training progress events on stderr: a rich live display on a terminal, plain lines otherwise.

``training_reporter`` is a module-level function (and ``functools.partial(training_reporter, quiet)``
is picklable), so spawned training workers can receive it; the display state lives in the
process that renders it (rank 0).
"""

from __future__ import annotations

import atexit

from . import display

_live: "_LiveDisplay | None" = None


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _start_line(event: dict) -> str:
    line = (f"training {event['parameters']:,} parameters on {event['examples']:,} examples · "
            f"batch {event.get('batch_size', '?')} · {event['world_size']} process(es) on {event['device']} · {event['precision']}")
    if event.get("resumed_from"):
        line += f" · resuming from {event['resumed_from']} (step {event['step']})"
    return line


def _log_line(event: dict) -> str:
    step, total = event["step"], event["steps"]
    parts = [f"step {step}/{total}"]
    for key, fmt in (("loss", "loss {:.4f}"), ("lr", "lr {:.2e}"), ("samples_per_s", "{:.1f} samples/s"),
                     ("valid_loss", "valid loss {:.4f}"), ("valid_bleu", "BLEU {:.4f}")):
        if key in event:
            parts.append(fmt.format(event[key]))
    if "eta_s" in event:
        parts.append(f"ETA {_eta(event['eta_s'])}")
    return " · ".join(parts)


class _LiveDisplay:
    """One progress bar with step, loss, lr, samples/s and ETA, redrawn in place; other lines print above it."""

    def __init__(self, event: dict):
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn

        columns = (
            TextColumn("step {task.completed}/{task.total}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("loss {task.fields[loss]} · lr {task.fields[lr]} · {task.fields[rate]} samples/s · ETA {task.fields[eta]}"),
        )
        self.bar = display.Bar(columns, enabled=True, transient=False, redirect=True, description="train", total=event["steps"],
                               completed=event["step"], loss="-", lr="-", rate="-", eta="-")

    def print(self, text: str) -> None:
        self.bar.print(text)

    def step(self, event: dict) -> None:
        self.bar.update(completed=event["step"])

    def log(self, event: dict) -> None:
        fields = {}
        if "loss" in event:
            fields["loss"] = f"{event['loss']:.4f}"
        if "lr" in event:
            fields["lr"] = f"{event['lr']:.2e}"
        if "samples_per_s" in event:
            fields["rate"] = f"{event['samples_per_s']:.1f}"
        if "eta_s" in event:
            fields["eta"] = _eta(event["eta_s"])
        self.bar.update(completed=event["step"], **fields)
        if "valid_loss" in event or "valid_bleu" in event:
            self.print(_log_line(event))

    def stop(self) -> None:
        self.bar.close()


def _stop_live() -> None:
    global _live
    if _live is not None:
        _live.stop()
        _live = None


atexit.register(_stop_live)


def training_reporter(quiet: bool, event: dict) -> None:
    """Progress callback for training: a live display on a terminal, plain log lines otherwise.

    With ``quiet`` only warnings are shown.
    """
    global _live
    kind = event.get("event")
    if kind == "warning":
        line = f"[yellow]warning:[/] {_escape(event['message'])}"
        (_live.print(line) if _live is not None else _print(line))
        return
    if kind == "stopped":
        _stop_live()
        if event.get("interrupted") or not quiet:
            where = f"the last complete checkpoint is {event['last']}" if event.get("last") else "no checkpoint was saved yet"
            _print(f"stopped at step {event['step']}: {_escape(where)}; continue with: {_escape(event['resume'])}")
        return
    if quiet:
        return
    if kind == "start":
        _stop_live()
        _print(_start_line(event))
        if display.on_terminal():
            _live = _LiveDisplay(event)
    elif kind == "step":
        if _live is not None:
            _live.step(event)
    elif kind == "log":
        if _live is not None:
            _live.log(event)
        else:
            _print(_log_line(event))
    elif kind == "save":
        line = f"[dim]saved {_escape(event['path'])}[/]"
        (_live.print(line) if _live is not None else _print(line))
    elif kind == "done":
        _stop_live()
        _print(f"done: step {event['step']} in {_eta(event['seconds'])}")


def _print(text: str) -> None:
    display.console().print(text, soft_wrap=True)  # one event, one line, however narrow the terminal or log


def _escape(text: str) -> str:
    return str(text).replace("[", "\\[")
