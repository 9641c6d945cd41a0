"""``diffuseq train``: a JSONL file in, a run folder of model folders out; resumable and distributed.

Every rank computes the same global batch order, timesteps and noise from the run's
seed; a rank trains on its contiguous slice of each global batch, and DDP averages
gradients, so N processes follow the same trajectory as one process with the same
global batch. Only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import distributed
from .checkpoint import LoadedModel
from .config import ModelFolderConfig, DiffusionConfig, SequenceConfig, preset
from .data import collate, epoch_batches, length_stats, load_or_tokenize, read_pairs
from .diffusion import Diffusion, LossAwareSampler
from .errors import DiffuseqError, UsageError
from .model import DiffuSeqTransformer
from .modelcard import training_card
from .run_folder import append_metrics, latest_checkpoint, load_train_state, save_checkpoint
from .tokenizer import TextTokenizer, load_tokenizer, tokenizer_from_str, train_bpe
from .train_config import TrainConfig

Progress = Callable[[dict], None]


class TrainingDiverged(DiffuseqError):
    pass


@dataclass
class TrainResult:
    run: Path
    step: int
    last_checkpoint: Path | None
    seconds: float


# --- entry point ---------------------------------------------------------------------------
def train(cfg: TrainConfig, progress: Progress | None = None, resume: bool = False) -> TrainResult:
    """Train as configured; spawns worker processes for --gpus N / --nproc N unless under torchrun."""
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    if resume and (run / "config.json").exists():
        saved = TrainConfig.from_json((run / "config.json").read_text())
        cfg = replace(saved, steps=cfg.steps, max_minutes=cfg.max_minutes, gpus=cfg.gpus, nproc=cfg.nproc, device=cfg.device)
    tokenizer = _prepare_tokenizer(cfg, run)
    (run / "config.json").write_text(cfg.to_json())
    if cfg.world_size > 1 and not distributed.launched_by_torchrun():
        distributed.spawn(_worker, cfg.world_size, (cfg, tokenizer.to_str(), progress, resume))
        last = latest_checkpoint(run)
        step = load_train_state(last)["step"] if last else 0
        return TrainResult(run, step, last, 0.0)
    return _worker(0, cfg, tokenizer.to_str(), progress, resume)


def _prepare_tokenizer(cfg: TrainConfig, run: Path) -> TextTokenizer:
    saved = run / "tokenizer.json"
    if saved.exists():
        return load_tokenizer(saved)
    if cfg.tokenizer:
        tok = load_tokenizer(cfg.tokenizer)
    else:
        tok = train_bpe(_texts(cfg.data), vocab_size=cfg.vocab_size)
    tok.save(saved)
    return tok


def _texts(path):
    for src, trg, _ in read_pairs(path):
        yield src
        yield trg


def _device_kind(cfg: TrainConfig) -> str:
    if cfg.gpus:
        return "cuda"
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is available")
    return "cuda" if cfg.device.startswith("cuda") else "cpu"


def _precision(cfg: TrainConfig, device: torch.device) -> str:
    if cfg.precision:
        return cfg.precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def build_model_config(cfg: TrainConfig, vocab_size: int):
    overrides = {k: v for k, v in cfg.model_overrides.items() if k != "train"}
    if cfg.embed_dim:
        overrides.setdefault("embed_dim", cfg.embed_dim)
    overrides.setdefault("self_condition", cfg.self_condition)
    return preset(cfg.preset, vocab_size, max_positions=max(cfg.seq_len, 8), **overrides)


# --- the worker ------------------------------------------------------------------------------
def _worker(local_rank: int, cfg: TrainConfig, tokenizer_json: str, progress: Progress | None, resume: bool) -> TrainResult:
    placement = distributed.init(_device_kind(cfg), cfg.gpus)
    try:
        return Trainer(cfg, tokenizer_from_str(tokenizer_json), placement, progress if placement.is_main else None).run(resume)
    finally:
        distributed.shutdown()


class Trainer:
    def __init__(self, cfg: TrainConfig, tokenizer: TextTokenizer, placement, progress: Progress | None):
        self.cfg, self.tok, self.pl, self.progress = cfg, tokenizer, placement, progress
        self.run_dir = Path(cfg.out)
        self.device = placement.device
        self.precision = _precision(cfg, self.device)
        cache = self.run_dir / "cache"
        self.data = load_or_tokenize(cfg.data, tokenizer, cfg.seq_len, cache)
        self.valid = load_or_tokenize(cfg.valid, tokenizer, cfg.seq_len, cache) if cfg.valid else None
        p99, ratio = length_stats(self.data)
        self.folder_config = ModelFolderConfig(
            model=build_model_config(cfg, tokenizer.vocab_size),
            diffusion=DiffusionConfig(steps=cfg.diffusion_steps, schedule=cfg.schedule),
            sequence=SequenceConfig(
                seq_len=cfg.seq_len, pad_id=tokenizer.pad_id, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id,
                target_len_p99=p99, target_ratio_p99=round(ratio, 4),
            ),
            source=f"diffuseq train {Path(cfg.data).name}",
        )
        torch.manual_seed(cfg.seed)
        self.model = DiffuSeqTransformer(self.folder_config.model).to(self.device)
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        self.diffusion = Diffusion(self.folder_config.diffusion)
        self.sampler = LossAwareSampler(cfg.diffusion_steps)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # timesteps and noise, shared by all ranks
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16")
        self.ddp = None
        if placement.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step, self.epoch, self.batch_pos = 0, 0, 0
        self.batches = None

    def _lr_factor(self, step: int) -> float:
        c = self.cfg
        if c.warmup and step < c.warmup:
            return (step + 1) / c.warmup
        return max(0.0, 1.0 - (step - c.warmup) / max(1, c.steps - c.warmup))

    # --- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_pos": self.batch_pos,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": [e.cpu() for e in self.ema],
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "sampler": self.sampler.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "scaler": self.scaler.state_dict(),
        }

    def load(self, state: dict) -> None:
        self.step, self.epoch, self.batch_pos = state["step"], state["epoch"], state["batch_pos"]
        self.model.load_state_dict(state["model"])
        for e, s in zip(self.ema, state["ema"]):
            e.copy_(s.to(e.device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.scaler.load_state_dict(state["scaler"])

    def ema_state(self) -> dict:
        names = [n for n, _ in self.model.named_parameters()]
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state.update({n: e.detach().cpu() for n, e in zip(names, self.ema)})
        return state

    def save(self) -> Path | None:
        if not self.pl.is_main:
            return None
        card = training_card(self.cfg, self.folder_config, self.step, self.model.num_parameters())
        path = save_checkpoint(self.run_dir, self.step, self.folder_config, self.ema_state(), self.tok, card, self.state(), self.cfg.keep)
        self._emit({"event": "save", "step": self.step, "path": str(path)})
        return path

    def _emit(self, record: dict) -> None:
        if self.progress is not None:
            self.progress(record)

    # --- data ------------------------------------------------------------------------------------
    def next_batch(self) -> np.ndarray:
        if self.batches is None or self.batch_pos >= len(self.batches):
            if self.batches is not None:
                self.epoch, self.batch_pos = self.epoch + 1, 0
            self.batches = epoch_batches(self.data.lengths, self.cfg.batch_size, self.cfg.seed, self.epoch)
        index = self.batches[self.batch_pos]
        self.batch_pos += 1
        return index

    # --- one optimisation step ------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg, pl = self.cfg, self.pl
        index = self.next_batch()
        ids_np, mask_np = collate(self.data, index, self.tok.pad_id)
        B, L = ids_np.shape
        d = self.folder_config.model.embed_dim
        # Global draws, identical on every rank; each rank keeps its slice.
        t, weights = self.sampler.sample(B, self.gen)
        eps0 = torch.randn((B, L, d), generator=self.gen)
        noise = torch.randn((B, L, d), generator=self.gen)
        sc_mask = torch.rand(B, generator=self.gen) < 0.5
        per = B // pl.world_size
        lo, hi = pl.rank * per, (pl.rank + 1) * per
        micro = cfg.microbatch or per
        module = self.ddp or self.model
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        local_losses = []
        for start in range(lo, hi, micro):
            end = min(start + micro, hi)
            sl = slice(start, end)
            ids = torch.from_numpy(ids_np[sl]).to(self.device)
            mask = torch.from_numpy(mask_np[sl]).to(self.device)
            last = end >= hi
            sync = contextlib.nullcontext() if (last or self.ddp is None) else self.ddp.no_sync()
            with sync:
                with _autocast(self.precision, self.device):
                    losses = self.diffusion.training_losses(
                        _Forward(module, self.model), ids, mask, t[sl].to(self.device),
                        eps0[sl].to(self.device), noise[sl].to(self.device), sc_mask[sl].to(self.device),
                    )
                    loss = (losses.loss.float() * weights[sl].to(self.device)).sum() / per
                self.scaler.scale(loss).backward()
            local_losses.append(losses.loss.detach().float().cpu())
        self.scaler.unscale_(self.opt)
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        all_losses = distributed.all_gather_cat(torch.cat(local_losses), pl)
        mean_loss = float(all_losses.mean())
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"loss became {mean_loss} at step {self.step + 1}; stopped. The last good checkpoint is kept "
                f"({latest_checkpoint(self.run_dir) or 'none yet'}); lower --lr or use --precision fp32"
            )
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self._update_ema()
        self.sampler.update(t.tolist(), all_losses.tolist())
        self.step += 1
        return {"loss": mean_loss, "grad_norm": float(gnorm), "tokens": int(B * L)}

    @torch.no_grad()
    def _update_ema(self) -> None:
        rate = self.cfg.ema
        if self.cfg.ema_warmup:
            rate = min(rate, (1 + self.step) / (10 + self.step))
        params = [p.detach() for p in self.model.parameters()]
        torch._foreach_mul_(self.ema, rate)
        torch._foreach_add_(self.ema, params, alpha=1 - rate)

    @torch.no_grad()
    def valid_loss(self, limit: int = 256) -> float | None:
        if self.valid is None:
            return None
        self.model.eval()
        n = min(limit, len(self.valid))
        index = np.arange(n)
        ids_np, mask_np = collate(self.valid, index, self.tok.pad_id)
        g = torch.Generator().manual_seed(1234)
        T = self.diffusion.num_steps
        t = torch.linspace(0, T - 1, n).round().long()
        shape = (n, ids_np.shape[1], self.folder_config.model.embed_dim)
        eps0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        losses = self.diffusion.training_losses(
            self.model, torch.from_numpy(ids_np).to(self.device), torch.from_numpy(mask_np).to(self.device),
            t.to(self.device), eps0.to(self.device), noise.to(self.device), torch.zeros(n, dtype=torch.bool, device=self.device),
        )
        return float(losses.loss.mean())

    def eval_bleu(self) -> dict:
        from .validation import bleu_probe

        ema_model = DiffuSeqTransformer(self.folder_config.model).to(self.device)
        ema_model.load_state_dict({k: v.to(self.device) for k, v in self.ema_state().items()})
        ema_model.eval()
        loaded = LoadedModel(self.folder_config, ema_model, self.tok)
        return bleu_probe(loaded, self.cfg.valid or self.cfg.data, self.cfg.eval_lines, self.cfg.eval_sample_steps)

    # --- the loop ----------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        cfg = self.cfg
        if resume:
            ckpt = latest_checkpoint(self.run_dir)
            if ckpt is not None:
                self.load(load_train_state(ckpt))
                self.batches = None
                if self.batch_pos > 0:
                    self.batches = epoch_batches(self.data.lengths, cfg.batch_size, cfg.seed, self.epoch)
        self._emit({"event": "start", "step": self.step, "steps": cfg.steps, "parameters": self.model.num_parameters(),
                    "examples": len(self.data), "truncated": self.data.truncated, "precision": self.precision,
                    "world_size": self.pl.world_size, "device": str(self.device)})
        start = time.perf_counter()
        window_t, window_tokens, window_samples = time.perf_counter(), 0, 0
        last_ckpt = None
        while self.step < cfg.steps:
            out = self.train_step()
            window_tokens += out["tokens"]
            window_samples += cfg.batch_size
            record = None
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                dt = max(now - window_t, 1e-9)
                record = {"step": self.step, "loss": round(out["loss"], 5), "lr": self.sched.get_last_lr()[0],
                          "grad_norm": round(out["grad_norm"], 4), "samples_per_s": round(window_samples / dt, 2),
                          "tokens_per_s": round(window_tokens / dt, 1), "elapsed_s": round(now - start, 1)}
                window_t, window_tokens, window_samples = now, 0, 0
            if self.valid is not None and cfg.valid_every and self.step % cfg.valid_every == 0:
                record = record or {"step": self.step}
                record["valid_loss"] = round(self.valid_loss(), 5)
            if cfg.eval_bleu_every and self.step % cfg.eval_bleu_every == 0 and self.pl.is_main:
                record = record or {"step": self.step}
                record.update(self.eval_bleu())
                record["elapsed_s"] = round(time.perf_counter() - start, 1)
            if record is not None and self.pl.is_main:
                append_metrics(self.run_dir, record)
                self._emit({"event": "log", "steps": cfg.steps, **record})
            out_of_time = cfg.max_minutes and (time.perf_counter() - start) > cfg.max_minutes * 60
            if self.step % cfg.save_every == 0 or self.step == cfg.steps or out_of_time:
                last_ckpt = self.save() or last_ckpt
            if out_of_time:
                break
        seconds = time.perf_counter() - start
        self._emit({"event": "done", "step": self.step, "seconds": seconds, "path": str(last_ckpt) if last_ckpt else None})
        return TrainResult(self.run_dir, self.step, last_ckpt, seconds)


class _Forward:
    """Let the loss call the DDP wrapper's forward while reaching the plain module's other methods."""

    def __init__(self, wrapped, module):
        self._wrapped, self._module = wrapped, module
        self.config = module.config

    def __call__(self, *args):
        return self._wrapped(*args)

    def embed(self, ids):
        return self._module.embed(ids)

    def logits(self, z):
        return self._module.logits(z)
