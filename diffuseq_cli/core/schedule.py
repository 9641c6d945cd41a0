"""Noise schedules: the cumulative ᾱ_t of the forward process, as pure functions.

DiffuSeq (appendix A) uses Diffusion-LM's "sqrt" schedule ᾱ(s) = 1 - sqrt(s + 0.0001)
for s = t/T. As in the official code, betas are taken from ratios of ᾱ at
consecutive grid points, β_t = min(1 - ᾱ((t+1)/T) / ᾱ(t/T), 0.999), and the
cumulative products of (1 - β) are the ᾱ_t used everywhere else. Values are
float64 so that cumulative products and square roots do not drift.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BETA = 0.999


def _alpha_bar_fn(name: str):
    if name == "sqrt":
        return lambda s: 1.0 - math.sqrt(s + 0.0001)
    if name == "cosine":
        return lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    raise ValueError(f"unknown noise schedule {name!r}")


def betas(name: str, steps: int) -> np.ndarray:
    """β_1..β_T (index 0 is the first step), float64, shape (T,)."""
    if name == "linear":
        scale = 1000.0 / steps
        return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    f = _alpha_bar_fn(name)
    out = [min(1.0 - f((i + 1) / steps) / f(i / steps), MAX_BETA) for i in range(steps)]
    return np.array(out, dtype=np.float64)


def alphas_cumprod(name: str, steps: int) -> np.ndarray:
    """ᾱ_t = Π_{s≤t} (1 - β_s) for t = 0..T-1, float64, shape (T,)."""
    return np.cumprod(1.0 - betas(name, steps))
