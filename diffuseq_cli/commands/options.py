"""Option aliases shared by several commands, defined once."""

from enum import Enum
from typing import Annotated, Optional

import typer

from ..config import PRECISIONS, ROUNDINGS
from ..errors import UsageError

# Library settings whose flag is not "--" + the field's name with dashes.
_FLAGS = {"model_overrides": "--config", "eval_bleu_every": "--eval-every", "num_heads": "--heads",
          "per_line": "--num-samples"}


def parse_gpus(value: str | None) -> tuple[int, ...] | None:
    """``--gpus`` of ``train`` and ``generate``: a count N (devices 0..N-1) or a comma-separated list of device ids."""
    if value is None:
        return None
    text = value.strip()
    try:
        if "," in text:
            ids = tuple(int(v) for v in text.split(",") if v.strip())
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            ids = tuple(range(count))
    except ValueError:
        raise UsageError(f"--gpus takes a count (4) or a list of device ids (0,2), not {value!r}") from None
    if any(i < 0 for i in ids):
        raise UsageError(f"--gpus takes non-negative numbers, not {value!r}")
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus lists a device twice: {value!r}")
    return ids


def flag_name(field: str) -> str:
    """The command-line flag of a library setting (``batch_size`` -> ``--batch-size``), for errors."""
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same output.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[
    Optional[str], typer.Option("--precision", help="fp32, bf16 or fp16 (default: bf16 on GPUs that support it, fp32 on CPU).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or summary (warnings and errors still show).")]
NumSamplesOpt = Annotated[int, typer.Option("--num-samples", "-n", help="Candidates per source line.")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (default: stdout).")]


# Choices shared by several commands (Typer lists them in --help and rejects others).
class MBRMetric(str, Enum):
    bleu = "bleu"
    rouge_l = "rouge_l"
    chrf = "chrf"


class InputFormat(str, Enum):
    auto = "auto"
    text = "text"
    jsonl = "jsonl"


class OutputFormat(str, Enum):
    text = "text"
    jsonl = "jsonl"


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of the library's choice list, for Typer (which lists them in --help and rejects others)."""
    return Enum(name, {value: value for value in values}, type=str)


# How each z_0 estimate is rounded to a word during sampling: the choices are config.ROUNDINGS.
Rounding = choices("Rounding", ROUNDINGS)


Precision = choices("Precision", PRECISIONS)
