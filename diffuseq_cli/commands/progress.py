"""Rendering library progress events on stderr: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys

from rich.console import Console

_console = Console(stderr=True, highlight=False)


def training_reporter(quiet: bool, event: dict) -> None:
    """Progress callback for training (a module-level function, so spawned workers can receive it)."""
    if quiet:
        return
    kind = event.get("event")
    if kind == "start":
        _console.print(
            f"training {event['parameters']:,} parameters on {event['examples']:,} examples "
            f"({event['truncated']} truncated) · {event['world_size']} process(es) on {event['device']} · {event['precision']}"
        )
    elif kind == "log":
        step, total = event["step"], event["steps"]
        parts = [f"step {step}/{total}"]
        for key, fmt in (("loss", "loss {:.4f}"), ("lr", "lr {:.2e}"), ("samples_per_s", "{:.1f} samples/s"),
                         ("valid_loss", "valid {:.4f}"), ("valid_bleu", "BLEU {:.4f}")):
            if key in event:
                parts.append(fmt.format(event[key]))
        if "elapsed_s" in event and step:
            eta = event["elapsed_s"] / step * (total - step)
            parts.append(f"ETA {eta / 60:.1f} min")
        _console.print(" · ".join(parts))
    elif kind == "save":
        _console.print(f"[dim]saved {event['path']}[/]")
    elif kind == "done":
        _console.print(f"done: step {event['step']} in {event['seconds']:.0f} s")


def is_terminal() -> bool:
    return sys.stderr.isatty()
