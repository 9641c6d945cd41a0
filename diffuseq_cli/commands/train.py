"""`diffuseq train`: options in, one call to the training library, a progress display out."""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import typer

from .options import PrecisionOpt, QuietOpt, SeedOpt

EPILOG = """[bold]Examples[/]

  diffuseq train data.jsonl                          # CPU, the fast recipe, small model
  diffuseq train data.jsonl --valid valid.jsonl --out runs/qqp --steps 20000
  diffuseq train data.jsonl --gpus 4 --preset base --batch-size 2048 --recipe paper
  diffuseq train data.jsonl --out runs/qqp --resume  # continue after an interruption
  torchrun --nnodes 2 --nproc-per-node 8 ... -m diffuseq_cli train data.jsonl --device cuda
"""


def _parse_gpus(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    if "," in value:
        return tuple(int(v) for v in value.split(",") if v.strip())
    return tuple(range(int(value)))


def train(
    data: Annotated[str, typer.Argument(help="Training data: JSONL with 'src' and 'trg' per line.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Run folder (checkpoints, logs, cache).")] = "runs/diffuseq",
    valid: Annotated[Optional[str], typer.Option("--valid", help="Validation JSONL (validation loss, BLEU probe).")] = None,
    recipe: Annotated[str, typer.Option("--recipe", help="fast (ours, for modest hardware) or paper.")] = "fast",
    preset: Annotated[str, typer.Option("--preset", help="Model size: tiny, small or base.")] = "small",
    config: Annotated[Optional[str], typer.Option("--config", help="JSON file of model fields overriding the preset.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="tokenizer.json or vocab.txt (default: train a BPE).")] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="BPE vocabulary size when training one.")] = 8000,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Maximum positions (source + target).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps.")] = 10000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Global batch size (all devices).")] = 64,
    microbatch: Annotated[Optional[int], typer.Option("--microbatch", help="Per-device batch; accumulates gradients.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate.")] = None,
    warmup: Annotated[Optional[int], typer.Option("--warmup", help="Linear warmup steps.")] = None,
    diffusion_steps: Annotated[Optional[int], typer.Option("--diffusion-steps", help="T.")] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="Noise schedule: sqrt, linear, cosine.")] = None,
    embed_dim: Annotated[Optional[int], typer.Option("--embed-dim", help="d, the embedding dimension.")] = None,
    self_condition: Annotated[Optional[bool], typer.Option("--self-condition/--no-self-condition", help="Self-conditioning.")] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help="EMA rate.")] = None,
    precision: PrecisionOpt = None,
    seed: SeedOpt = 0,
    save_every: Annotated[int, typer.Option("--save-every", help="Checkpoint interval (steps).")] = 1000,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Validation BLEU probe interval (0: off).")] = 0,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Stop and save after this wall time.")] = 0.0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="N GPUs (0..N-1) or a list like 0,2.")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Processes on CPU (gloo), mainly for testing.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's latest checkpoint.")] = False,
    quiet: QuietOpt = False,
):
    """Train a DiffuSeq model on a JSONL file of {"src", "trg"} pairs; writes a run folder of model folders."""
    from ..train import train as run_training
    from ..train_config import read_model_overrides, with_recipe
    from .progress import training_reporter

    overrides = read_model_overrides(config) if config else {}
    cfg = with_recipe(
        recipe, data=data, out=out, valid=valid, preset=preset, model_overrides=overrides, tokenizer=tokenizer,
        vocab_size=vocab_size, seq_len=seq_len, steps=steps, batch_size=batch_size, microbatch=microbatch, lr=lr,
        warmup=warmup, diffusion_steps=diffusion_steps, schedule=schedule, embed_dim=embed_dim,
        self_condition=self_condition, ema=ema, precision=precision, seed=seed, save_every=save_every,
        eval_bleu_every=eval_every, max_minutes=max_minutes, device=device, gpus=_parse_gpus(gpus), nproc=nproc,
        valid_every=500 if valid else 0,
    )
    result = run_training(cfg, progress=functools.partial(training_reporter, quiet), resume=resume)
    typer.echo(f"{result.last_checkpoint or result.run}", err=False)


train.__doc__ = (train.__doc__ or "") + "\n\n" + EPILOG
