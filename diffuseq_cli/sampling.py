"""Reverse process: one sampling loop over explicit (t, t_prev) pairs, samplers that differ only in ``step``.

Paper section 3 ("Training and Inference Methods"): start from EMB(x) ⊕ N(0, I);
at every step round the predicted z_0 to the nearest word embedding (L2) and put
EMB(x) back on the source positions (the anchoring function). Skipping steps is
done on the schedule: a sampler visiting steps s_K > ... > s_1 uses the true ᾱ of
exactly those steps (improved-diffusion's respacing), with ᾱ_prev = 1 after the last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .config import ROUNDINGS
from .diffusion import Diffusion

# noise_fn(step_index, shape_like) -> a noise tensor like ``shape_like`` (B, L, d)
NoiseFn = Callable[[int, torch.Tensor], torch.Tensor]


def step_schedule(num_steps: int, T: int, start: int | None = None) -> list[int]:
    """``num_steps`` timesteps out of 0..start (default T-1), evenly spaced, descending, from ``start`` to 0."""
    start = T - 1 if start is None else start
    if not 0 <= start < T:
        raise ValueError(f"the first step must be between 0 and T-1 = {T - 1}, got {start}")
    if not 1 <= num_steps <= start + 1:
        raise ValueError(f"steps must be between 1 and {start + 1}" + (f" (the model's T = {T})" if start == T - 1 else "")
                         + f", got {num_steps}")
    if num_steps == 1:
        return [start]
    frac = start / (num_steps - 1)
    steps = sorted({round(i * frac) for i in range(num_steps)}, reverse=True)
    return steps


class DDIMSampler:
    """Song et al. (2021), eq. 12, on the visited steps' ᾱ; eta = 0 is deterministic."""

    name = "ddim"

    def __init__(self, eta: float = 0.0):
        self.eta = eta

    @property
    def needs_noise(self) -> bool:
        return self.eta > 0

    def step(self, z0: torch.Tensor, zt: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor, noise) -> torch.Tensor:
        # (1) ε implied by z_t and the z_0 estimate
        eps = (zt - a_t.sqrt() * z0) / (1 - a_t).sqrt()
        # (2) σ_t = η sqrt((1-ᾱ_prev)/(1-ᾱ_t)) sqrt(1 - ᾱ_t/ᾱ_prev)
        sigma = self.eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
        # (3) z_prev = sqrt(ᾱ_prev) z_0 + sqrt(1-ᾱ_prev-σ²) ε + σ noise
        out = a_prev.sqrt() * z0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if noise is not None:
            out = out + sigma * noise
        return out


class DDPMSampler:
    """Ancestral sampling from the posterior q(z_prev | z_t, z_0) (paper appendix A, eq. 14).

    ``variance="large"`` uses β_t (the official default for a fixed variance, σ² = β, with the
    posterior variance at the first step); ``"small"`` uses the posterior variance β̃_t.
    """

    name = "ddpm"
    needs_noise = True

    def __init__(self, variance: str = "large"):
        if variance not in ("large", "small"):
            raise ValueError("variance must be 'large' or 'small'")
        self.variance = variance

    def step(self, z0, zt, a_t, a_prev, noise):
        beta = 1 - a_t / a_prev  # the visited step's β (respaced when steps are skipped)
        # (1) posterior mean μ̃(z_t, z_0)
        mean = (a_prev.sqrt() * beta / (1 - a_t)) * z0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * zt
        # (2) its variance
        post_var = beta * (1 - a_prev) / (1 - a_t)
        var = post_var if self.variance == "small" else torch.where(a_prev < 1, beta, post_var)
        is_last = a_prev >= 1  # ᾱ_prev = 1 only after the final step: no noise there
        if noise is None:
            return mean
        return mean + torch.where(is_last, torch.zeros_like(var), var.sqrt()) * noise


def make_sampler(name: str, eta: float = 0.0):
    if name == "ddim":
        return DDIMSampler(eta)
    if name == "ddpm":
        return DDPMSampler()
    raise ValueError(f"unknown sampler {name!r}; choose ddim or ddpm")


def _row_blocks(n: int, V: int, device: torch.device) -> list[tuple[int, int]]:
    """(start, stop) row blocks for (rows, V) score matrices.

    A (rows, V) block stays in cache on a CPU (2-3x faster than one (n, V) matrix) and bounds
    memory on a GPU. Blocks hold at least 64 rows, and a short remainder joins the last block:
    a matrix product gives a row the same bits for any such row count (products of a few rows
    take other BLAS code paths), so results do not depend on the blocking or the batch.
    """
    rows = max(64, (2**18 if device.type == "cpu" else 2**30) // (4 * V))
    starts = list(range(0, n, rows))
    if len(starts) > 1 and n - starts[-1] < 64:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def _head_blocks(flat: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor):
    """(start, stop, logits) of the tied head, z·e + bias, over ``_row_blocks`` of flat (N, d)."""
    for start, stop in _row_blocks(flat.shape[0], table.shape[0], flat.device):
        yield start, stop, flat[start:stop] @ table.T + head_bias.to(flat.dtype)


def round_to_embeddings(
    z: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The word for each position: z (B, L, d), table (V, d) -> (rows (B, L, d), ids (B, L)).

    Without ``head_bias``: the nearest embedding row by L2 (the paper's rounding). With it: the
    argmax of the tied head, z·e + bias (``rounding="logits"``).
    """
    flat = z.reshape(-1, z.shape[-1])  # (B·L, d)
    ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
    if head_bias is not None:
        for start, stop, logits in _head_blocks(flat, table, head_bias):
            ids[start:stop] = logits.argmax(dim=-1)
        return table[ids].view_as(z), ids.view(z.shape[:-1])
    # ‖z - e‖² = ‖z‖² - 2 z·e + ‖e‖²; ‖z‖² does not change the argmin.
    e2 = (table * table).sum(-1)  # (V,)
    for start, stop in _row_blocks(flat.shape[0], table.shape[0], flat.device):
        scores = flat[start:stop] @ table.T
        # In place on the one (rows, V) product: scaling by -2 is exact and e + (-x) is e - x bit for bit.
        dist = scores.mul_(-2)
        dist = dist.add_(e2) if dist.dtype == e2.dtype else e2 + dist  # autocast: promote as e2 - 2 z·e would
        ids[start:stop] = dist.argmin(dim=-1)
    return table[ids].view_as(z), ids.view(z.shape[:-1])


def expected_embedding(z: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor) -> torch.Tensor:
    """Σ_w p(w | z) EMB(w) under the tied head, (B, L, d) -> (B, L, d) (``rounding="soft"``).

    Soft rounding (CDCD's score interpolation): at high noise the estimate stays a blend of
    the plausible words instead of committing to the most frequent one; as p(w | z) sharpens
    it becomes that word's embedding.
    """
    flat = z.reshape(-1, z.shape[-1])
    out = torch.empty_like(flat)
    for start, stop, logits in _head_blocks(flat, table, head_bias):
        probs = torch.softmax(logits.float(), dim=-1)
        out[start:stop] = (probs @ table.float()).to(out.dtype)
    return out.view_as(z)


def head_choice(z: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's word and its probability, (B, L, d) -> (max_w p(w | z), argmax ids), both (B, L).

    The ids are those of ``round_to_embeddings(z, table, head_bias)`` (same blocks, same sums),
    so logits rounding can reuse them instead of scoring the vocabulary twice.
    """
    flat = z.reshape(-1, z.shape[-1])
    conf = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
    ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
    for start, stop, logits in _head_blocks(flat, table, head_bias):
        ids[start:stop] = logits.argmax(dim=-1)
        conf[start:stop] = torch.softmax(logits.float(), dim=-1).amax(dim=-1)
    return conf.view(z.shape[:-1]), ids.view(z.shape[:-1])


def least_confident(confidence: torch.Tensor, target_mask: torch.Tensor, share: float) -> torch.Tensor:
    """(B, L) bool: in each row the round(share · targets) target positions of lowest confidence."""
    count = (target_mask.sum(dim=1).float() * share).round().long()  # (B,)
    order = torch.where(target_mask, confidence, torch.inf).argsort(dim=1, stable=True)  # least confident first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < count[:, None]) & target_mask


REMASK_SCHEDULES = ("trained", "linear")


@dataclass(frozen=True)
class Remasking:
    """Which words go back into the absorbing state before each step (mask-predict, Ghazvininejad et al. 2019).

    ``share``: the model's training share (``train --absorbing``). ``schedule``: "trained" re-masks
    the share training absorbed at t_prev (``Diffusion.absorb_probability``), so the next step
    sees what training showed it; "linear" decays from all words at t = T to none at t = 0, as
    mask-predict's iterations do. ``repeats``: also re-mask every word equal to the word before it,
    whatever its confidence (a stutter is never kept while steps remain).
    """

    share: float
    schedule: str = "trained"
    repeats: bool = False

    def __post_init__(self):
        if self.schedule not in REMASK_SCHEDULES:
            raise ValueError(f"unknown re-masking schedule {self.schedule!r}; choose from {', '.join(REMASK_SCHEDULES)}")

    def share_at(self, diffusion: Diffusion, t_prev: int) -> float:
        if self.schedule == "linear":
            return (t_prev + 1) / diffusion.num_steps
        return float(diffusion.absorb_probability(t_prev, self.share))

    def pick(self, diffusion: Diffusion, t_prev: int, confidence: torch.Tensor, words: torch.Tensor,
             target_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the target positions to re-mask before the step to ``t_prev``."""
        doubtful = least_confident(confidence, target_mask, self.share_at(diffusion, t_prev))
        if self.repeats:
            doubtful = doubtful | repeated_words(words, target_mask)
        return doubtful


def repeated_words(words: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: target positions holding the same word as the target position before them."""
    same = torch.zeros_like(target_mask)
    same[:, 1:] = (words[:, 1:] == words[:, :-1]) & target_mask[:, 1:] & target_mask[:, :-1]
    return same


@dataclass
class SampleOutput:
    sample: torch.Tensor  # final z_0 (B, L, d)
    tokens: torch.Tensor  # argmax of the head (B, L)


def start_from_noise(model, diffusion: Diffusion, noise: torch.Tensor, t: int) -> torch.Tensor:
    """z at timestep t with nothing known of z_0: the noise itself, or m + sqrt(1-ᾱ_t)·noise for a
    DiffuSeq-v2 model (its process drifts to the absorbing state m, not to 0)."""
    centre = diffusion.absorbing_centre(model)
    if centre is None:
        return noise
    return centre.to(noise.dtype) + float(diffusion.sqrt_one_minus_ac[t]) * noise


@torch.no_grad()
def sample_loop(
    model,
    diffusion: Diffusion,
    z_T: torch.Tensor,
    source_emb: torch.Tensor,
    target_mask: torch.Tensor,
    steps: Sequence[int],
    sampler,
    noise_fn: NoiseFn | None = None,
    rounding: bool | str = True,
    remask: float | Remasking = 0.0,
) -> SampleOutput:
    """Run the reverse process over ``steps`` (descending timesteps) from z_T.

    z_T, source_emb: (B, L, d); target_mask: (B, L) bool, True on the generated part.
    ``noise_fn(i, like)`` supplies the noise for step i (None for deterministic samplers).
    ``rounding``: "l2" (or True) nearest embedding, "logits" the head's argmax, "soft" the
    expected embedding under the head, "none" (or False).
    ``remask`` (models trained with an absorbing state): a ``Remasking``, or a share for its
    defaults; before each step to t_prev the words it picks (the least confident by the head's
    probability) are put back in the absorbing state, and the next step re-decides them.
    Models of ``absorbing_kind="v2"`` (DiffuSeq-v2) run the reverse process centred on the
    absorbing state m (z_t - m follows the usual process), and a re-masked word is m itself;
    their z_T should start at m plus noise (``start_from_noise``).
    """
    rounding = {True: "l2", False: "none"}.get(rounding, rounding)
    if not isinstance(remask, Remasking):
        remask = Remasking(remask) if remask > 0 else None
    centre = diffusion.absorbing_centre(model)
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; choose from {', '.join(ROUNDINGS)}")
    keep = ~target_mask[..., None]
    z = torch.where(keep, source_emb, z_T)
    if centre is not None:
        centre = centre.to(z.dtype)
    table = model.word_embedding.weight.to(z.dtype)
    ac = diffusion.alphas_cumprod
    self_cond = None
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        tt = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        z0 = model(z, diffusion.model_time(tt), self_cond, target_mask=target_mask)
        if model.config.self_condition:
            self_cond = z0
        doubtful = best = None
        if remask is not None and t_prev >= 0:
            confidence, best = head_choice(z0, table, model.lm_head_bias)
            doubtful = remask.pick(diffusion, t_prev, confidence, best, target_mask)
        if rounding == "l2":
            z0, _ = round_to_embeddings(z0, table)
        elif rounding == "logits":
            z0 = table[best] if best is not None else round_to_embeddings(z0, table, model.lm_head_bias)[0]
        elif rounding == "soft":
            z0 = expected_embedding(z0, table, model.lm_head_bias)
        a_t = torch.tensor(float(ac[t]), dtype=torch.float64).to(z.dtype)
        a_prev = torch.tensor(float(ac[t_prev]) if t_prev >= 0 else 1.0, dtype=torch.float64).to(z.dtype)
        noise = noise_fn(i, z) if (sampler.needs_noise and noise_fn is not None and t_prev >= 0) else None
        if centre is None:
            z = sampler.step(z0, z, a_t.to(z.device), a_prev.to(z.device), noise)
        else:  # the process of z - m
            z = centre + sampler.step(z0 - centre, z - centre, a_t.to(z.device), a_prev.to(z.device), noise)
        if doubtful is not None and centre is not None:  # DiffuSeq-v2: an absorbed word is m, clean
            z = torch.where(doubtful[..., None], centre.expand_as(z), z)
        elif doubtful is not None:  # the same ε, with the absorbing state as those words' z_0
            state = model.absorbing_state.to(z.dtype)
            z = z + torch.where(doubtful[..., None], a_prev.to(z.device).sqrt() * (state - z0), torch.zeros_like(z))
        z = torch.where(keep, source_emb, z)  # anchoring: the source part is EMB(x) again
    tokens = model.logits(z).argmax(dim=-1)
    return SampleOutput(sample=z, tokens=tokens)
