"""`diffuseq generate`: read sources, stream them through the model, write results in input order."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DeviceOpt, NumSamplesOpt, OutputOpt, PrecisionOpt, QuietOpt, SeedOpt

EPILOG = """[bold]Examples[/]

  echo "How do I learn Python quickly?" | diffuseq generate
  diffuseq generate --task paraphrase -i in.txt -n 10 --mbr > out.txt
  diffuseq generate --model runs/qqp/latest -i in.txt --steps 20 --format jsonl -o out.jsonl
  diffuseq generate --model ema_0.9999_050000.pt --tokenizer vocab.txt -i in.txt
  diffuseq generate -i big.txt -o out.txt --resume    # continue an interrupted job
"""


def generate(
    input: Annotated[str, typer.Option("--input", "-i", help="Source lines (text, or JSONL with 'src'); '-' is stdin.")] = "-",
    output: OutputOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model folder, official .pt, or ORG/NAME[@REV] on the Hub.")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="A task's default model (default: paraphrase).")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="Tokenizer for an official .pt (vocab.txt or tokenizer.json).")] = None,
    num_samples: NumSamplesOpt = 1,
    mbr: Annotated[bool, typer.Option("--mbr", help="Pick one candidate per line by MBR (sentence-BLEU).")] = False,
    mbr_metric: Annotated[str, typer.Option("--mbr-metric", help="bleu, rouge_l or chrf.")] = "bleu",
    steps: Annotated[Optional[int], typer.Option("--steps", help="Denoising steps (default: 20 with ddim, T with ddpm).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="ddim (any number of steps) or ddpm (ancestral).")] = "ddim",
    length: Annotated[str, typer.Option("--length", help="auto: size the target from the model's length statistics; full: always seq_len.")] = "auto",
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Candidates per model call.")] = 64,
    fmt: Annotated[str, typer.Option("--format", help="text or jsonl.")] = "text",
    input_format: Annotated[str, typer.Option("--input-format", help="auto, text or jsonl.")] = "auto",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="With -o: continue after the lines already written.")] = False,
    quiet: QuietOpt = False,
):
    """Generate target text for each source line with a DiffuSeq model."""
    from ..errors import UsageError
    from .generate_run import run_generate

    if fmt not in ("text", "jsonl"):
        raise UsageError("--format must be text or jsonl")
    if input_format not in ("auto", "text", "jsonl"):
        raise UsageError("--input-format must be auto, text or jsonl")
    if sampler not in ("ddim", "ddpm"):
        raise UsageError("--sampler must be ddim or ddpm")
    if length not in ("auto", "full"):
        raise UsageError("--length must be auto or full")
    if resume and not output:
        raise UsageError("--resume needs -o FILE")
    run_generate(
        input=input, output=output, model=model, task=task, tokenizer=tokenizer, num_samples=num_samples, mbr=mbr,
        mbr_metric=mbr_metric, steps=steps, sampler=sampler, length=length, seed=seed, batch_size=batch_size, fmt=fmt,
        input_format=input_format, device=device, precision=precision, resume=resume, quiet=quiet,
    )


generate.__doc__ = (generate.__doc__ or "") + "\n\n" + EPILOG
