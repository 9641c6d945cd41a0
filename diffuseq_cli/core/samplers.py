"""Samplers: how one reverse step turns (z_t, the z_0 estimate) into z_prev.

diffusers' scheduler interface, small: a sampler has a ``name``, says whether it
``needs_noise``, and has a ``step``. ``sampling.sample_loop`` does everything else (the
model call, rounding, re-masking, anchoring) the same way for every sampler.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch


class Sampler(Protocol):
    name: str

    @property
    def needs_noise(self) -> bool: ...

    def step(self, z0: torch.Tensor, zt: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor,
             noise: torch.Tensor | None) -> torch.Tensor:
        """z_prev from the z_0 estimate and z_t, with ᾱ of the step and of the next visited step."""


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


# The samplers by name (the choices config.SAMPLERS lists): adding one is a class with ``name``,
# ``needs_noise`` and ``step``, registered here.
SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "ddim": lambda eta=0.0: DDIMSampler(eta),
    "ddpm": lambda eta=0.0: DDPMSampler(),
}


def make_sampler(name: str, eta: float = 0.0) -> Sampler:
    """The sampler registered as ``name``; ``eta`` is DDIM's η (ddpm has none)."""
    try:
        return SAMPLERS[name](eta)
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}") from None
