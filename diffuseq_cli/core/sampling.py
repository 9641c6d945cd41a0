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

from ..config import ROUNDINGS
from .diffusion import Diffusion
from .remasking import Remasking
from .rounding import TargetRows, head_choice, round_estimate
from .samplers import Sampler

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
    sampler: Sampler,
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
    head_bias = model.lm_head_bias if rounding in ("logits", "soft") or remask is not None else None
    ac = diffusion.alphas_cumprod
    sampler = sampler.start()  # a multistep sampler's memory belongs to this run alone
    target = TargetRows(target_mask)
    self_cond = None
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        tt = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        z0 = model(z, diffusion.model_time(tt), self_cond, target_mask=target_mask)
        if model.config.self_condition:
            self_cond = z0
        doubtful = best = None
        z0_target = target.take(z0)  # the head scores the target part only: anchoring overwrites the rest
        if remask is not None and t_prev >= 0:
            confidence, best = head_choice(z0_target, table, head_bias)
            blank = torch.zeros(target_mask.shape, device=z.device)
            doubtful = remask.pick(diffusion, t_prev, target.put(confidence, blank), target.put(best, blank.long()), target_mask)
        z0 = target.put(round_estimate(z0_target, rounding, table, head_bias, best), z0)
        a_t = torch.tensor(float(ac[t]), dtype=torch.float64).to(z.dtype).to(z.device)
        a_prev = torch.tensor(float(ac[t_prev]) if t_prev >= 0 else 1.0, dtype=torch.float64).to(z.dtype).to(z.device)
        noise = noise_fn(i, z) if (sampler.needs_noise and noise_fn is not None and t_prev >= 0) else None
        if centre is None:
            z = sampler.step(z0, z, a_t, a_prev, noise)
        else:  # the process of z - m
            z = centre + sampler.step(z0 - centre, z - centre, a_t, a_prev, noise)
        if doubtful is not None:
            z = remask.absorb(z, doubtful, z0, a_prev, model.absorbing_state, centre)
        z = torch.where(keep, source_emb, z)  # anchoring: the source part is EMB(x) again
    tokens = model.logits(z).argmax(dim=-1)
    return SampleOutput(sample=z, tokens=tokens)
