"""`diffuseq train`: options in, one call to the training library, a progress display out."""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..training.config import DEFAULT_LENGTH_LOSS, DEFAULT_PRESET, default, describe_default
from .help import HelpOpt
from .options import PrecisionOpt, QuietOpt, Rounding, parse_gpus

EPILOG = """Examples:

\b
  diffuseq train data.jsonl                  # CPU, fast recipe, small model
  diffuseq train data.jsonl --steps 200 --max-minutes 5  # a short trial run
  diffuseq train data.jsonl --valid valid.jsonl --out runs/qqp --steps 20000
  diffuseq train data.jsonl --gpus 4 --preset base -b 2048 --recipe paper
  diffuseq train data.jsonl --gpus 0,2       # two chosen GPUs
  diffuseq train data.jsonl --out runs/qqp --resume   # after an interruption
  diffuseq train data.jsonl --init runs/qqp/latest    # fine-tune a model
  diffuseq train data.jsonl --init bert-base-uncased --gpus 1   # from BERT
  torchrun --nnodes 2 --nproc-per-node 8 ... -m diffuseq_cli train data.jsonl

Options left out take the recipe's value (or the --config file's "train" section); when
resuming, the run's saved settings. Every option is described in docs/training-cli.md of
the source repository.
"""


def _opt(*names: str, help: str, field: str | None = None):
    """An option whose default is not shown by click: None means "the recipe's (or the run's) value";
    ``field`` names the TrainConfig field whose default the help states (from ``train_config``)."""
    if field:
        help = f"{help} (default: {describe_default(field)})."
    return typer.Option(*names, help=help, show_default=False)


def train(
    data: Annotated[str, typer.Argument(help="Training data: JSONL with 'src' and 'trg' per line.", metavar="DATA")],
    out: Annotated[str, typer.Option("--out", "-o", help="Run folder (checkpoints, logs, cache).")] = default("out"),
    valid: Annotated[Optional[str], _opt("--valid", help="Validation JSONL (validation loss, BLEU probe).")] = None,
    recipe: Annotated[Optional[str], _opt("--recipe", help="fast (ours, for modest hardware) or paper", field="recipe")] = None,
    preset: Annotated[Optional[str], _opt("--preset", help=f"Model size: tiny, small or base (default: {DEFAULT_PRESET}; with --init, the starting model's).")] = None,
    config: Annotated[Optional[str], _opt("--config", help="JSON file of model fields overriding the preset (training settings under \"train\").")] = None,
    tokenizer: Annotated[Optional[str], _opt("--tokenizer", help="tokenizer.json or vocab.txt (default: train a BPE on the data).")] = None,
    vocab_size: Annotated[Optional[int], _opt("--vocab-size", help="BPE vocabulary size when training one", field="vocab_size")] = None,
    seq_len: Annotated[Optional[int], _opt("--seq-len", help="Maximum positions, source + target", field="seq_len")] = None,
    steps: Annotated[Optional[int], _opt("--steps", help="Optimisation steps", field="steps")] = None,
    batch_size: Annotated[Optional[int], _opt("--batch-size", "-b", help="Global batch size, all processes together", field="batch_size")] = None,
    microbatch: Annotated[Optional[int], _opt("--microbatch", help="Per-process batch; accumulates gradients to the global batch.")] = None,
    lr: Annotated[Optional[float], _opt("--lr", help="Peak learning rate", field="lr")] = None,
    warmup: Annotated[Optional[int], _opt("--warmup", help="Linear warmup steps", field="warmup")] = None,
    weight_decay: Annotated[Optional[float], _opt("--weight-decay", help="AdamW weight decay", field="weight_decay")] = None,
    grad_clip: Annotated[Optional[float], _opt("--grad-clip", help="Gradient norm clipping, 0: off", field="grad_clip")] = None,
    diffusion_steps: Annotated[Optional[int], _opt("--diffusion-steps", help="T, the number of diffusion steps", field="diffusion_steps")] = None,
    schedule: Annotated[Optional[str], _opt("--schedule", help="Noise schedule: sqrt, linear, cosine", field="schedule")] = None,
    embed_dim: Annotated[Optional[int], _opt("--embed-dim", help="d, the embedding dimension", field="embed_dim")] = None,
    self_condition: Annotated[Optional[bool], _opt("--self-condition/--no-self-condition", help="Self-conditioning", field="self_condition")] = None,
    timesteps: Annotated[Optional[str], _opt("--timesteps", help="How training draws t: loss-aware (the paper's importance sampling) or uniform", field="timesteps")] = None,
    positions: Annotated[Optional[str], _opt("--positions", help="absolute (one index over source and target, as the official model) or segment (the target restarts at 0)", field="positions")] = None,
    token_loss: Annotated[Optional[float], _opt("--token-loss", help="Weight of the head's cross-entropy on the prediction, 0: the paper's loss", field="token_loss")] = None,
    dropout: Annotated[Optional[float], _opt("--dropout", help="Dropout rate", field="dropout")] = None,
    absorbing: Annotated[Optional[float], _opt("--absorbing", help="Share of target tokens that training puts in a learned absorbing state at the highest noise, growing linearly with t (DiffuSeq-v2's discrete noise); 0: off", field="absorbing")] = None,
    absorbing_kind: Annotated[Optional[str], _opt("--absorbing-kind", help="replace (ours: the state stands in for the word and is noised like it, share growing linearly in t) or v2 (DiffuSeq-v2 as published: noise centred on the state, absorbed words hold it clean, share·sqrt(1-ᾱ_t))", field="absorbing_kind")] = None,
    regions: Annotated[Optional[str], _opt("--regions", help="Target regions in training: padded (the target then [PAD]s, the model ends it) or exact (the target alone; trains a length head for generate --length predict)", field="regions")] = None,
    length_loss: Annotated[Optional[float], _opt("--length-loss", help=f"Weight of the length head's loss with --regions exact (default: {DEFAULT_LENGTH_LOSS}).")] = None,
    init: Annotated[Optional[str], _opt("--init", help="Start from a model folder (fine-tuning) or a BERT, as the official --use_plm_init bert: a folder or a Hub id such as bert-base-uncased. Its weights, vocabulary and sizes replace --preset.")] = None,
    rounding: Annotated[Optional[Rounding], _opt("--rounding", help="How the model's reverse process rounds each z_0 estimate to words: l2 (the nearest embedding, the paper's), logits (the head's argmax), soft (the embeddings averaged under the head's probabilities) or none", field="rounding")] = None,
    ema: Annotated[Optional[float], _opt("--ema", help="EMA rate", field="ema")] = None,
    precision: PrecisionOpt = None,
    seed: Annotated[Optional[int], _opt("--seed", help="Random seed: the same seed gives the same run", field="seed")] = None,
    save_every: Annotated[Optional[int], _opt("--save-every", help="Checkpoint interval in steps", field="save_every")] = None,
    keep: Annotated[Optional[int], _opt("--keep", help="Numbered checkpoints kept, 0: all", field="keep")] = None,
    log_every: Annotated[Optional[int], _opt("--log-every", help="Log interval in steps", field="log_every")] = None,
    valid_every: Annotated[Optional[int], _opt("--valid-every", help="Validation-loss interval in steps, 0: off", field="valid_every")] = None,
    eval_every: Annotated[Optional[int], _opt("--eval-every", help="Validation BLEU probe interval in steps, 0: off", field="eval_bleu_every")] = None,
    max_minutes: Annotated[Optional[float], _opt("--max-minutes", help="Stop and save after this wall time, 0: no limit.")] = None,
    device: Annotated[Optional[str], _opt("--device", help="auto, cpu or cuda", field="device")] = None,
    gpus: Annotated[Optional[str], _opt("--gpus", help="N GPUs (0..N-1) or a list like 0,2; one process each.")] = None,
    nproc: Annotated[Optional[int], _opt("--nproc", help="Processes on CPU (gloo backend), mainly for testing", field="nproc")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's latest checkpoint.")] = False,
    quiet: QuietOpt = False,
    show_help: HelpOpt = False,
):
    """Train a DiffuSeq model on a JSONL file of {"src", "trg"} pairs; writes a run folder of model folders."""
    from ..training.config import resolve_config
    from ..training.run import train as run_training
    from .train_progress import training_reporter

    explicit = dict(
        data=data, out=out, valid=valid, recipe=recipe, preset=preset, tokenizer=tokenizer, vocab_size=vocab_size,
        seq_len=seq_len, steps=steps, batch_size=batch_size, microbatch=microbatch, lr=lr, warmup=warmup,
        weight_decay=weight_decay, grad_clip=grad_clip, diffusion_steps=diffusion_steps, schedule=schedule,
        embed_dim=embed_dim, self_condition=self_condition, timesteps=timesteps, positions=positions, token_loss=token_loss, dropout=dropout,
        absorbing=absorbing, absorbing_kind=absorbing_kind, regions=regions, length_loss=length_loss, init=init, rounding=rounding.value if rounding else None, ema=ema, precision=precision, seed=seed,
        save_every=save_every, keep=keep, log_every=log_every, valid_every=valid_every, eval_bleu_every=eval_every,
        max_minutes=max_minutes, device=device, gpus=parse_gpus(gpus), nproc=nproc,
    )
    cfg = resolve_config(explicit, config_file=config, resume=resume)
    result = run_training(cfg, progress=functools.partial(training_reporter, quiet), resume=resume)
    if result.rank == 0:
        typer.echo(f"{result.last_checkpoint or result.run}")


train.__doc__ = (train.__doc__ or "") + "\n\n" + EPILOG
