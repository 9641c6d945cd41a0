"""Samplers: how one reverse step turns (z_t, the z_0 estimate) into z_prev.

diffusers' scheduler interface, small: a sampler has a ``name``, says whether it
``needs_noise``, has a ``step``, and ``start`` gives the object one reverse process uses
(a multistep method remembers its earlier estimates there). ``sampling.sample_loop`` does
everything else (the model call, rounding, re-masking, anchoring) the same way for every sampler.
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

    def start(self) -> "Sampler":
        """The sampler for one reverse process, from its first step (itself, when it keeps no state)."""


class _Stateless:
    """A sampler whose step depends on its arguments alone: one object serves every run."""

    def start(self):
        return self


class DDIMSampler(_Stateless):
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


class DDPMSampler(_Stateless):
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


class DPMSolverPP:
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2), the sampler of DiffuSeq-v2, in its
    data-prediction form: our denoiser predicts z_0 directly.

    With α = sqrt(ᾱ), σ = sqrt(1 - ᾱ) and λ = log(α/σ) on the visited steps' true ᾱ (as DDIM), a step
    from s to t (h = λ_t - λ_s) is z_t = (σ_t/σ_s) z_s - α_t (e^{-h} - 1) D, where D is the z_0
    estimate (first order: DDIM) or, from the second step on, its linear extrapolation from the
    previous estimate, D = (1 + 1/(2r)) z0_s - 1/(2r) z0_prev with r = h_prev / h. The first step
    is first order (there is no previous estimate), and so is the last (to ᾱ = 1, h infinite):
    it lands on the final estimate, as DDIM does.
    ``order=1`` is DDIM at every step.
    """

    name = "dpm++"
    needs_noise = False

    def __init__(self, order: int = 2):
        if order not in (1, 2):
            raise ValueError("DPM-Solver++ order must be 1 or 2")
        self.order = order
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (z_0 estimate, λ) of the previous step

    def start(self) -> "DPMSolverPP":
        return DPMSolverPP(self.order)

    def step(self, z0, zt, a_t, a_prev, noise=None):
        # (1) h = λ_prev - λ_t, the step's length in log-SNR (infinite at the final step, where ᾱ_prev = 1)
        lam_t = _log_snr(a_t)
        h = _log_snr(a_prev) - lam_t
        last, self._last = self._last, (z0, lam_t)
        # (2) D = z0 + (z0 - z0_last)/(2r): the estimate extrapolated along λ from the previous one
        d = z0
        if self.order == 2 and last is not None:
            z0_last, lam_last = last
            half_inv_r = 0.5 * h / (lam_t - lam_last)
            # The final step stays first order (no sync to ask which step it is: a where, as DDPM's).
            half_inv_r = torch.where(torch.isinf(h), torch.zeros_like(half_inv_r), half_inv_r)
            d = z0 + half_inv_r * (z0 - z0_last)
        # (3) z_prev = (σ_prev/σ_t) z_t - α_prev (e^{-h} - 1) D; at the final step σ_prev = 0, e^{-h} = 0: z_prev = D = z0
        return ((1 - a_prev) / (1 - a_t)).sqrt() * zt - a_prev.sqrt() * torch.expm1(-h) * d


def _log_snr(a: torch.Tensor) -> torch.Tensor:
    """λ = log(α/σ) = ½ log(ᾱ / (1 - ᾱ))."""
    return 0.5 * (torch.log(a) - torch.log1p(-a))


# The samplers by name (the choices config.SAMPLERS lists): adding one is a class with ``name``,
# ``needs_noise``, ``step`` and ``start``, registered here.
SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "ddim": lambda eta=0.0: DDIMSampler(eta),
    "ddpm": lambda eta=0.0: DDPMSampler(),
    "dpm++": lambda eta=0.0: DPMSolverPP(),
}


def make_sampler(name: str, eta: float = 0.0) -> Sampler:
    """The sampler registered as ``name``; ``eta`` is DDIM's η (ddpm and dpm++ have none)."""
    try:
        return SAMPLERS[name](eta)
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}") from None
