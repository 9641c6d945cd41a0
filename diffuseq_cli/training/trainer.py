"""The optimisation loop of one training process (rank): batches, loss, update, EMA, checkpoints.

Every rank computes the same global batch order and timesteps from the run's seed, and
the noise of sample j of step s comes from a generator seeded by (seed, s, j's block) alone;
a rank trains on its contiguous slice of each global batch and DDP averages gradients, so
N processes follow the same trajectory as one process with the same global batch (and
gradient accumulation with ``--microbatch`` gives the same update as the whole batch).
Only rank 0 writes checkpoints and logs. The paper's recipe: section 4.1; the loss: eq. 3.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import DecodingConfig, DiffusionConfig, ModelFolderConfig, SequenceConfig
from ..core.diffusion import Diffusion, absorbing_positions
from ..core.model import DiffuSeqTransformer
from ..core.seeds import derived_seed
from ..core.timesteps import LossAwareTimesteps
from ..errors import DiffuseqError, FieldError
from ..modelfiles.card import training_card
from ..modelfiles.folder import LoadedModel
from ..modelfiles.run_folder import (
    STATE,
    append_metrics,
    latest_checkpoint,
    load_train_state,
    remove_stale,
    save_checkpoint,
    truncate_metrics,
)
from ..modelfiles.tokenizer import TextTokenizer
from ..precision import autocast, resolve_precision
from . import distributed
from .clock import Clock
from .config import TrainConfig
from .data import collate, epoch_batches, length_stats, load_or_tokenize
from .model_config import build_model_config, start_weights, starting_model


Progress = Callable[[dict], None]
VALID_NOISE_SEED = 1234  # the validation loss uses the same noise at every evaluation: values compare
NOISE_BLOCK = 16  # samples per noise generator: the noise of a sample never depends on the world size


class TrainingDiverged(DiffuseqError):
    """The loss or the gradient became NaN/inf; training stopped and the last good checkpoint stays ``latest``."""


@dataclass
class TrainResult:
    run: Path
    step: int
    last_checkpoint: Path | None
    seconds: float
    rank: int = 0  # under torchrun every process gets a result; rank 0's is the one to report


def noise_seed(seed: int, step: int, block: int, stream: int = 0) -> int:
    """A 63-bit seed from (run seed, step, block of NOISE_BLOCK samples, stream) alone."""
    return derived_seed(seed, step, block, stream)


class Trainer:
    def __init__(self, cfg: TrainConfig, tokenizer: TextTokenizer, placement, progress: Progress | None):
        self.cfg, self.tok, self.pl, self.progress = cfg, tokenizer, placement, progress
        if cfg.batch_size % placement.world_size:
            raise FieldError(f"{{batch_size}} {cfg.batch_size} is not divisible by the {placement.world_size} processes")
        self.run_dir = Path(cfg.out)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = placement.device
        self.precision = resolve_precision(cfg.precision, self.device)
        cache = self.run_dir / "cache"
        self.data = load_or_tokenize(cfg.data, tokenizer, cfg.seq_len, cache)
        self.valid = load_or_tokenize(cfg.valid, tokenizer, cfg.seq_len, cache) if cfg.valid else None
        p99, ratio = length_stats(self.data)
        start = starting_model(cfg) if cfg.init else None
        self.started_from = start.describe() if start else None  # the start itself (a BERT's tensors) is not kept
        self.folder_config = ModelFolderConfig(
            model=build_model_config(cfg, tokenizer.vocab_size, start),
            diffusion=DiffusionConfig(steps=cfg.diffusion_steps, schedule=cfg.schedule, rounding=cfg.rounding,
                                      absorbing=cfg.absorbing, absorbing_kind=cfg.absorbing_kind),
            sequence=SequenceConfig(
                seq_len=cfg.seq_len, pad_id=tokenizer.pad_id, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id,
                target_len_p99=p99, target_ratio_p99=round(ratio, 4), regions=cfg.regions,
            ),
            # exact regions decode best with a length beam and repeats collapsed (docs/training.md)
            decoding=DecodingConfig(lengths=3, dedup=True) if cfg.regions == "exact" else DecodingConfig(),
            source=f"diffuseq train {Path(cfg.data).name}" + (f" --init {start.source}" if start else ""),
        )
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = DiffuSeqTransformer(self.folder_config.model)
        if start is not None:
            self.model.load_state_dict(start_weights(cfg, start, self.model), strict=True)
        self.model.to(self.device)
        # Dropout draws from the global generators: a different stream on each rank.
        torch.manual_seed(noise_seed(cfg.seed, 0, placement.rank, stream=1))
        self.ema = [p.detach().clone() for p in self.model.parameters()]
        self.diffusion = Diffusion(self.folder_config.diffusion)
        self.timesteps = LossAwareTimesteps(cfg.diffusion_steps, adaptive=cfg.timesteps == "loss-aware")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # timesteps, shared by all ranks
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ddp = None
        if placement.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step, self.epoch, self.batch_pos = 0, 0, 0
        self.batches = None
        self.clock = Clock(cfg.max_minutes)

    def _lr_factor(self, step: int) -> float:
        """Linear warmup over ``warmup`` steps, then linear decay to 0 at ``steps`` (0-based optimiser step)."""
        c = self.cfg
        if c.warmup and step < c.warmup:
            return (step + 1) / c.warmup
        return max(0.0, 1.0 - (step - c.warmup) / max(1, c.steps - c.warmup))

    # --- state -------------------------------------------------------------------------------
    def _rng_state(self) -> dict:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def state(self) -> dict:
        """What resume needs; a collective call in distributed runs (every rank's RNG state is gathered)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_pos": self.batch_pos,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": [e.detach().cpu() for e in self.ema],
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "sampler": self.timesteps.state_dict(),  # the key older run folders were saved with
            "generator": self.gen.get_state(),
            "rng": distributed.all_gather_object(self._rng_state(), self.pl),
            "scaler": self.scaler.state_dict(),
            "elapsed_s": self.clock.elapsed(),
        }

    def load(self, state: dict) -> None:
        self.step, self.epoch, self.batch_pos = state["step"], state["epoch"], state["batch_pos"]
        self.model.load_state_dict(state["model"])
        for e, s in zip(self.ema, state["ema"]):
            e.copy_(s.to(e.device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.timesteps.load_state_dict(state["sampler"])
        self.gen.set_state(state["generator"])
        rngs = state.get("rng")
        if rngs and len(rngs) == self.pl.world_size:
            mine = rngs[self.pl.rank]
            torch.set_rng_state(mine["cpu"])
            if "cuda" in mine and self.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], self.device)
        elif "torch_rng" in state and self.pl.world_size == 1:  # written by an earlier version
            torch.set_rng_state(state["torch_rng"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.clock.before = float(state.get("elapsed_s", 0.0))

    def ema_state(self) -> dict:
        names = [n for n, _ in self.model.named_parameters()]
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state.update({n: e.detach().cpu() for n, e in zip(names, self.ema)})
        return state

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0); every rank must call it, as it gathers the RNG states."""
        train_state = self.state()
        if not self.pl.is_main:
            return None
        card = training_card(self.cfg, self.folder_config, self.step, self.model.num_parameters(),
                             self.started_from)
        path = save_checkpoint(self.run_dir, self.step, self.folder_config, self.ema_state(), self.tok, card, train_state, self.cfg.keep)
        self._emit({"event": "save", "step": self.step, "path": str(path)})
        return path

    def _emit(self, record: dict) -> None:
        if self.progress is not None:
            self.progress(record)

    # --- data ------------------------------------------------------------------------------------
    def next_batch(self) -> np.ndarray:
        """Indices of the next global batch; (epoch, batch_pos) is the data position a checkpoint keeps."""
        if self.batches is None or self.batch_pos >= len(self.batches):
            if self.batches is not None:
                self.epoch, self.batch_pos = self.epoch + 1, 0
            self.batches = epoch_batches(self.data.lengths, self.cfg.batch_size, self.cfg.seed, self.epoch)
        index = self.batches[self.batch_pos]
        self.batch_pos += 1
        return index

    def batch_noise(self, lo: int, hi: int, L: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps0, noise), each (hi-lo, L, d), for samples lo..hi-1 of this step's global batch.

        Drawn in blocks of NOISE_BLOCK samples, each from its own generator seeded by
        (seed, step, block): a rank draws only its slice, and a sample's noise is the same
        whatever the number of processes or microbatches.
        """
        d = self.folder_config.model.embed_dim
        first, last = lo // NOISE_BLOCK, (hi - 1) // NOISE_BLOCK
        g = torch.Generator(device=self.device)
        parts = []
        for block in range(first, last + 1):
            g.manual_seed(noise_seed(self.cfg.seed, self.step, block))
            parts.append(torch.randn((NOISE_BLOCK, 2, L, d), generator=g, device=self.device))
        both = torch.cat(parts)[lo - first * NOISE_BLOCK : hi - first * NOISE_BLOCK]  # (hi-lo, 2, L, d)
        return both[:, 0], both[:, 1]

    def _collate(self, data, index: np.ndarray):
        """(ids, target_mask, key_mask or None) as numpy arrays, in the run's target regions: with
        exact regions the batch padding is neither target nor attended to; padded regions keep
        the official layout, where the padding is target and every position is real."""
        exact = self.cfg.regions == "exact"
        ids, mask, real = collate(data, index, self.tok.pad_id, exact=exact)
        return ids, mask, real if exact else None

    # --- one optimisation step ------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg, pl, dev = self.cfg, self.pl, self.device
        index = self.next_batch()
        ids_np, mask_np, real_np = self._collate(self.data, index)
        B, L = ids_np.shape
        # Global draws, identical on every rank; each rank keeps its contiguous slice.
        t, weights = self.timesteps.sample(B, self.gen)
        sc_mask = torch.rand(B, generator=self.gen) < 0.5
        absorb_u = torch.rand(B, L, generator=self.gen) if cfg.absorbing > 0 else None  # drawn only when used
        per = B // pl.world_size
        lo, hi = pl.rank * per, (pl.rank + 1) * per
        ids = torch.from_numpy(ids_np[lo:hi]).to(dev)
        mask = torch.from_numpy(mask_np[lo:hi]).to(dev)
        real = torch.from_numpy(real_np[lo:hi]).to(dev) if real_np is not None else None
        t_loc, w_loc, sc_loc = t[lo:hi].to(dev), weights[lo:hi].to(dev), sc_mask[lo:hi].to(dev)
        eps0, noise = self.batch_noise(lo, hi, L)
        absorb = None
        if absorb_u is not None:
            p = self.diffusion.absorb_probability(t[lo:hi], cfg.absorbing)
            absorb = absorbing_positions(absorb_u[lo:hi].to(dev), p.to(dev), mask)
        micro = min(cfg.microbatch or per, per)
        module = self.ddp if self.ddp is not None else self.model
        lr = self.opt.param_groups[0]["lr"]
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        local_losses = []
        for start in range(0, per, micro):
            sl = slice(start, min(start + micro, per))
            last = sl.stop >= per
            sync = contextlib.nullcontext() if (last or self.ddp is None) else self.ddp.no_sync()
            with sync:
                with autocast(self.precision, dev):
                    losses = self.diffusion.training_losses(
                        _Forward(module, self.model), ids[sl], mask[sl], t_loc[sl], eps0[sl], noise[sl], sc_loc[sl],
                        token_weight=cfg.token_loss, absorb=None if absorb is None else absorb[sl],
                        key_mask=None if real is None else real[sl], length_weight=cfg.length_weight,
                    )
                # Sum over the microbatch / the local batch: accumulated, this is the local mean,
                # and DDP's average over ranks makes it the mean over the global batch.
                loss = (losses.loss.float() * w_loc[sl]).sum() / per
                self.scaler.scale(loss).backward()
            local_losses.append(losses.loss.detach().float())
        self.scaler.unscale_(self.opt)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        all_losses = distributed.all_gather_cat(torch.cat(local_losses), pl).cpu()  # (B,), global order
        mean_loss = float(all_losses.mean())
        # With fp16 the scaler skips steps whose gradients overflow; elsewhere an inf/NaN gradient is divergence.
        if not math.isfinite(mean_loss) or (not math.isfinite(gnorm) and not self.scaler.is_enabled()):
            what = f"loss {mean_loss}" if not math.isfinite(mean_loss) else f"gradient norm {gnorm}"
            raise TrainingDiverged(
                f"training diverged: {what} at step {self.step + 1}; stopped. The last good checkpoint stays latest "
                f"({latest_checkpoint(self.run_dir) or 'none saved yet'}); lower --lr or use --precision fp32"
            )
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self._update_ema()
        self.timesteps.update(t.tolist(), all_losses.tolist())
        self.step += 1
        return {"loss": mean_loss, "grad_norm": gnorm, "lr": lr, "tokens": int(B * L),
                "real_tokens": int(self.data.lengths[index].sum())}

    @torch.no_grad()
    def _update_ema(self) -> None:
        rate = self.cfg.ema
        if self.cfg.ema_warmup:
            rate = min(rate, (1 + self.step) / (10 + self.step))
        params = [p.detach() for p in self.model.parameters()]
        torch._foreach_mul_(self.ema, rate)
        torch._foreach_add_(self.ema, params, alpha=1 - rate)

    @torch.no_grad()
    def valid_loss(self, limit: int = 256, chunk: int = 64) -> float | None:
        """Mean loss of the first ``limit`` validation pairs at evenly spread timesteps, fixed noise."""
        if self.valid is None:
            return None
        self.model.eval()
        n = min(limit, len(self.valid))
        g = torch.Generator().manual_seed(VALID_NOISE_SEED)
        T = self.diffusion.num_steps
        t_all = torch.linspace(0, T - 1, n).round().long()
        d = self.folder_config.model.embed_dim
        total = 0.0
        for lo in range(0, n, chunk):
            index = np.arange(lo, min(lo + chunk, n))
            ids_np, mask_np, real_np = self._collate(self.valid, index)
            shape = (len(index), ids_np.shape[1], d)
            eps0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
            with autocast(self.precision, self.device):
                losses = self.diffusion.training_losses(
                    self.model, torch.from_numpy(ids_np).to(self.device), torch.from_numpy(mask_np).to(self.device),
                    t_all[index].to(self.device), eps0.to(self.device), noise.to(self.device),
                    torch.zeros(len(index), dtype=torch.bool, device=self.device), token_weight=self.cfg.token_loss,
                    key_mask=torch.from_numpy(real_np).to(self.device) if real_np is not None else None,
                    length_weight=self.cfg.length_weight,
                )
            total += float(losses.loss.float().sum())
        return total / n

    def eval_bleu(self) -> dict:
        from .probe import bleu_probe

        ema_model = DiffuSeqTransformer(self.folder_config.model).to(self.device)
        ema_model.load_state_dict({k: v.to(self.device) for k, v in self.ema_state().items()})
        ema_model.eval()
        loaded = LoadedModel(self.folder_config, ema_model, self.tok)
        return bleu_probe(loaded, self.cfg.valid or self.cfg.data, self.cfg.eval_lines, self.cfg.eval_sample_steps)

    # --- the loop ----------------------------------------------------------------------------
    def _resume(self) -> Path | None:
        """Load the run's latest checkpoint (rank 0 chooses; every rank must see it). Returns it, or None."""
        ckpt = latest_checkpoint(self.run_dir) if self.pl.is_main else None
        path = distributed.broadcast_object(str(ckpt) if ckpt else None, self.pl)
        if path is None:
            return None
        seen = distributed.all_gather_object(os.path.exists(Path(path) / STATE), self.pl)
        if not all(seen):
            raise DiffuseqError(f"{path} is not visible to every process; with several machines the run folder "
                                "must be on a shared filesystem")
        self.load(load_train_state(Path(path)))
        if self.batch_pos > 0:
            self.batches = epoch_batches(self.data.lengths, self.cfg.batch_size, self.cfg.seed, self.epoch)
        return Path(path)

    def _out_of_time(self) -> bool:
        """Past ``--max-minutes`` on any rank (a collective call where there is a budget)."""
        return bool(self.clock.budget) and distributed.any_rank(self.clock.over_budget(), self.pl)

    def run(self, resume: bool) -> TrainResult:
        cfg = self.cfg
        if self.pl.is_main:
            remove_stale(self.run_dir)
        last_ckpt = self._resume() if resume else None
        if self.pl.is_main:
            truncate_metrics(self.run_dir, self.step)  # records of steps after the checkpoint are redone
        first_step = self.step
        self._emit({"event": "start", "step": self.step, "steps": cfg.steps, "parameters": self.model.num_parameters(),
                    "examples": len(self.data), "truncated": self.data.truncated,
                    "truncated_lines": [int(n) for n in self.data.truncated_lines], "seq_len": cfg.seq_len,
                    "precision": self.precision, "world_size": self.pl.world_size, "device": str(self.device),
                    "batch_size": cfg.batch_size, "resumed_from": str(last_ckpt) if last_ckpt else None})
        if self.data.truncated:
            lines = ", ".join(str(int(n)) for n in self.data.truncated_lines)
            more = ", ..." if self.data.truncated > len(self.data.truncated_lines) else ""
            self._emit({"event": "warning", "message": (
                f"{self.data.truncated:,} of {len(self.data):,} pairs in {cfg.data} are longer than --seq-len "
                f"{cfg.seq_len} and were truncated (lines {lines}{more})")})
        start = self.clock.start()
        window_t, window_tokens, window_samples = start, 0, 0
        try:
            while self.step < cfg.steps:
                out = self.train_step()
                window_tokens += out["tokens"]
                window_samples += cfg.batch_size
                self._emit({"event": "step", "step": self.step, "steps": cfg.steps})
                record = None
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    dt = max(now - window_t, 1e-9)
                    done = self.step - first_step
                    record = {"step": self.step, "loss": round(out["loss"], 5), "lr": out["lr"],
                              "grad_norm": round(out["grad_norm"], 4), "samples_per_s": round(window_samples / dt, 2),
                              "tokens_per_s": round(window_tokens / dt, 1), "elapsed_s": round(self.clock.elapsed(), 1),
                              "eta_s": round(self.clock.eta(now - start, done, cfg.steps - self.step), 1)}
                    window_t, window_tokens, window_samples = now, 0, 0
                if self.pl.is_main and self.valid is not None and cfg.valid_every and self.step % cfg.valid_every == 0:
                    record = record or {"step": self.step}
                    record["valid_loss"] = round(self.valid_loss(), 5)
                if self.pl.is_main and cfg.eval_bleu_every and self.step % cfg.eval_bleu_every == 0:
                    record = record or {"step": self.step}
                    record.update(self.eval_bleu())
                    record["elapsed_s"] = round(self.clock.elapsed(), 1)
                if record is not None and self.pl.is_main:
                    append_metrics(self.run_dir, record)
                    self._emit({"event": "log", "steps": cfg.steps, **record})
                out_of_time = self._out_of_time()
                if self.step % cfg.save_every == 0 or self.step == cfg.steps or out_of_time:
                    last_ckpt = self.save() or last_ckpt
                if out_of_time:
                    break
        except BaseException as exc:
            last = latest_checkpoint(self.run_dir) if self.pl.is_main else None
            self._emit({"event": "stopped", "step": self.step, "reason": str(exc) or type(exc).__name__,
                        "interrupted": isinstance(exc, KeyboardInterrupt), "last": str(last) if last else None,
                        "resume": f"diffuseq train {cfg.data} --out {cfg.out} --resume"})
            raise
        seconds = self.clock.session()
        self._emit({"event": "done", "step": self.step, "seconds": seconds, "path": str(last_ckpt) if last_ckpt else None})
        return TrainResult(self.run_dir, self.step, last_ckpt, seconds, self.pl.rank)


class _Forward:
    """Let the loss call the DDP wrapper's forward while reaching the plain module's other methods."""

    def __init__(self, wrapped, module):
        self._wrapped, self._module = wrapped, module
        self.config = module.config

    def __call__(self, *args, **kwargs):
        return self._wrapped(*args, **kwargs)

    def embed(self, ids):
        return self._module.embed(ids)

    def logits(self, z):
        return self._module.logits(z)

    @property
    def absorbing_state(self):
        return self._module.absorbing_state

    def length_logits(self, ids, source_mask, emb=None):
        return self._module.length_logits(ids, source_mask, emb)
