"""``diffuseq train``: a JSONL file in, a run folder of model folders out; resumable and distributed.

This module prepares a run (tokenizer, data checks, run folder) once, then launches one
process per device (or joins the processes torchrun started); ``trainer.py`` holds the loop
each process runs.
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import torch

from ..errors import DataError, DiffuseqError, FieldError, UsageError, literal
from ..modelfiles.hub import resolve_init
from ..modelfiles.init_model import InitModel
from ..modelfiles.run_folder import latest_checkpoint, write_text_atomic
from ..modelfiles.tokenizer import TextTokenizer, load_tokenizer, tokenizer_from_str, train_bpe
from ..precision import check_gpus, resolve_device
from ..textio import check_readable
from . import distributed
from .config import TrainConfig, check_resumable, read_run_config
from .data import file_hash, load_or_tokenize, read_pairs
from .model_config import build_model_config, starting_model
from .trainer import Progress, Trainer, TrainingDiverged, TrainResult

__all__ = ["train", "prepare_run", "Trainer", "TrainingDiverged", "TrainResult", "build_model_config"]


# --- entry point ---------------------------------------------------------------------------
def train(cfg: TrainConfig, progress: Progress | None = None, resume: bool = False) -> TrainResult:
    """Train as configured; spawns worker processes for --gpus N / --nproc N unless under torchrun.

    ``progress`` receives event dicts (``start``, ``warning``, ``step``, ``log``, ``save``,
    ``done``, ``stopped``) on rank 0; with several processes it must be picklable (a
    module-level function or a ``functools.partial`` of one).
    """
    if distributed.launched_by_torchrun():
        return _torchrun_worker(cfg, progress, resume)
    run = Path(cfg.out).absolute()
    created = _outermost_missing(run)
    try:
        cfg, tokenizer = prepare_run(cfg, resume)
        if cfg.world_size > 1:
            _check_picklable(progress)
            return distributed.spawn(_worker, cfg.world_size, (cfg, tokenizer.to_str(), progress, resume))
        return _worker(0, cfg, tokenizer.to_str(), progress, resume)
    except BaseException:
        if created is not None and run.is_dir() and latest_checkpoint(run) is None:
            _remove_created(run, created)  # a run that never saved leaves no empty folder behind
        raise


def _outermost_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (``runs`` for a new ``runs/qqp``)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_created(run: Path, created: Path) -> None:
    """Remove the run folder, then the folders above it up to ``created`` that this run made and
    that are still empty (another run may have put something there meanwhile)."""
    shutil.rmtree(run, ignore_errors=True)
    for folder in run.parents:
        if folder == created.parent:
            break
        try:
            folder.rmdir()
        except OSError:  # not empty: something else lives there
            break


def _check_picklable(progress) -> None:
    try:
        pickle.dumps(progress)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise UsageError(
            f"the progress callback cannot be sent to worker processes ({exc}); "
            "use a module-level function (or functools.partial of one), or None"
        ) from None


def prepare_run(cfg: TrainConfig, resume: bool, world_size: int | None = None) -> tuple[TrainConfig, TextTokenizer]:
    """Everything before the first step, in one process: checks, tokenizer, tokenized-data cache, config.json.

    Bad data, options or files fail here, as one clean error, before any worker starts.
    """
    run = Path(cfg.out)
    check_readable(cfg.data, "training data")
    if cfg.valid:
        check_readable(cfg.valid, "--valid")
    if run.exists() and not run.is_dir():
        raise FieldError(f"{{out}} {literal(run)}: exists and is not a folder; choose another {{out}}")
    _device_kind(cfg)  # options this machine cannot run fail before anything is written
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FieldError(f"{{out}} {literal(run)}: cannot create the run folder ({literal(exc.strerror or exc)})") from None
    world = world_size or cfg.world_size
    if cfg.batch_size % world:
        raise FieldError(f"{{batch_size}} {cfg.batch_size} is not divisible by the {world} processes")
    latest = latest_checkpoint(run)
    if latest is not None and not resume:
        raise UsageError(f"{run} already holds checkpoints (latest: {latest.name}); "
                         "pass --resume to continue that run, or choose another --out")
    saved = read_run_config(run) if latest is not None else None
    if saved is not None:
        check_resumable(saved, cfg)
    start = None
    if cfg.init:
        # A resumed run keeps the snapshot it started from; a new one finds (or downloads) it now.
        source = cfg.init_source or (saved.init_source if saved is not None else None) or _find_init(cfg.init)
        cfg = dataclasses.replace(cfg, init_source=source)
        start = starting_model(cfg)
    tokenizer = _prepare_tokenizer(cfg, run, start, resuming=latest is not None)
    model_config = build_model_config(cfg, tokenizer.vocab_size, start)
    data = load_or_tokenize(cfg.data, tokenizer, cfg.seq_len, run / "cache")
    if len(data) < cfg.batch_size:
        raise DataError(f"only {len(data)} examples, fewer than one batch of {cfg.batch_size}; lower --batch-size", cfg.data)
    if cfg.valid:
        load_or_tokenize(cfg.valid, tokenizer, cfg.seq_len, run / "cache")
    write_text_atomic(run / "config.json", cfg.to_json(resolved_model=dataclasses.asdict(model_config)))
    return cfg, tokenizer


def _find_init(spec: str) -> str:
    """Where ``--init`` is: ``local:PATH`` or ``hub:REPO@COMMIT`` (downloaded into the Hub cache if need be)."""
    try:
        return resolve_init(spec).source
    except UsageError as exc:
        raise FieldError(f"{{init}} {literal(spec)}: {literal(exc)}") from None


def _prepare_tokenizer(cfg: TrainConfig, run: Path, start: InitModel | None, resuming: bool) -> TextTokenizer:
    """The run's own tokenizer when resuming; else ``--tokenizer``; else the ``--init`` model's; else a BPE
    trained on the data (cached)."""
    saved = run / "tokenizer.json"
    if resuming and saved.exists():
        return _load_tokenizer(saved)
    if cfg.tokenizer:
        tok = _load_tokenizer(cfg.tokenizer)
    elif start is not None:
        tok = _start_tokenizer(cfg, start)
    else:
        cached = run / "cache" / f"bpe-{file_hash(cfg.data)[:20]}-v{cfg.vocab_size}.json"
        if cached.exists():
            tok = _load_tokenizer(cached)
        else:
            tok = train_bpe(_texts(cfg.data), vocab_size=cfg.vocab_size)
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cached, tok.to_str())
    write_text_atomic(saved, tok.to_str())
    return tok


def _load_tokenizer(path) -> TextTokenizer:
    try:
        return load_tokenizer(path)
    except DiffuseqError:
        raise
    except Exception as exc:  # the tokenizers library raises plain Exception for unreadable files
        raise UsageError(f"cannot read tokenizer {path}: {exc}") from None


def _start_tokenizer(cfg: TrainConfig, start: InitModel) -> TextTokenizer:
    try:
        return start.tokenizer()
    except DiffuseqError as exc:  # a BERT whose vocabulary does not match its weights, an unreadable file
        raise FieldError(f"{{init}} {literal(cfg.init)}: {literal(exc)}") from None


def _texts(path):
    for src, trg, _ in read_pairs(path):
        yield src
        yield trg


def _device_kind(cfg: TrainConfig) -> str:
    if cfg.gpus:
        check_gpus(cfg.gpus)
        return "cuda"
    return torch.device(resolve_device(cfg.device)).type


# --- workers ---------------------------------------------------------------------------------
def _worker(local_rank: int, cfg: TrainConfig, tokenizer_json: str, progress: Progress | None, resume: bool) -> TrainResult:
    placement = distributed.init(_device_kind(cfg), cfg.gpus)
    try:
        return Trainer(cfg, tokenizer_from_str(tokenizer_json), placement, progress if placement.is_main else None).run(resume)
    finally:
        distributed.shutdown()


def _torchrun_worker(cfg: TrainConfig, progress: Progress | None, resume: bool) -> TrainResult:
    """Under torchrun every process runs ``train``: rank 0 prepares the run and shares the outcome."""
    placement = distributed.init(_device_kind(cfg), cfg.gpus)
    try:
        outcome = None
        if placement.is_main:
            try:
                cfg, tok = prepare_run(cfg, resume, world_size=placement.world_size)
                outcome = ("ok", cfg, tok.to_str())
            except DiffuseqError as exc:
                outcome = ("error", exc, None)
        kind, value, tokenizer_json = distributed.broadcast_object(outcome, placement)
        if kind == "error":
            raise value
        trainer = Trainer(value, tokenizer_from_str(tokenizer_json), placement, progress if placement.is_main else None)
        return trainer.run(resume)
    finally:
        distributed.shutdown()


