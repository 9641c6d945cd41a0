"""The forward process with partial noising and the DiffuSeq training loss (paper section 3, eq. 2-3).

Indexing follows the official code: timestep t ∈ {0..T-1}, ``alphas_cumprod[t]``
is ᾱ after t+1 noising steps, and t = 0 is the lightest noise level. All
schedule tables are float64; values are cast to the data's dtype when used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DiffusionConfig
from . import schedule


def extract(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """table[t] shaped to broadcast against ``like`` (B, ...): returns (B, 1, ..., 1) in like's dtype."""
    out = table.to(like.device)[t].to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean of (B, L) ``values`` over the positions where ``mask`` holds (0 for none)."""
    m = mask.to(values.dtype)
    return (values * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


@dataclass
class Losses:
    """Per-sequence loss terms (B,) each; ``loss`` is what training minimises."""

    loss: torch.Tensor
    mse: torch.Tensor
    rounding: torch.Tensor
    prior: torch.Tensor
    token: torch.Tensor  # cross-entropy of the head on the prediction (0 unless weighted in)
    length: torch.Tensor  # cross-entropy of the length head (0 unless weighted in)


class Diffusion:
    """Schedule tables and the math of q(z_t | z_0) with partial noising."""

    def __init__(self, cfg: DiffusionConfig):
        self.config = cfg
        self.num_steps = cfg.steps
        ac = schedule.alphas_cumprod(cfg.schedule, cfg.steps)
        self.alphas_cumprod = torch.from_numpy(ac)  # (T,) float64
        self.sqrt_ac = torch.from_numpy(np.sqrt(ac))
        self.sqrt_one_minus_ac = torch.from_numpy(np.sqrt(1.0 - ac))

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep as the model sees it: t · 1000 / T (float) when rescaling, else t."""
        if self.config.rescale_timesteps:
            return t.float() * (1000.0 / self.num_steps)
        return t.float()

    def q_sample(self, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, target_mask: torch.Tensor,
                 centre: torch.Tensor | None = None) -> torch.Tensor:
        """z_t = sqrt(ᾱ_t) z_0 + sqrt(1-ᾱ_t) ε on target positions; source positions stay z_0 exactly.

        z0, noise: (B, L, d); t: (B,) long; target_mask: (B, L) bool, True where noised.
        ``centre`` (DiffuSeq-v2's state m, ``absorbing_centre``): the process of z - m instead,
        z_t = sqrt(ᾱ_t)(z_0 - m) + sqrt(1-ᾱ_t) ε + m.
        """
        if centre is None:
            zt = extract(self.sqrt_ac, t, z0) * z0 + extract(self.sqrt_one_minus_ac, t, z0) * noise
        else:
            centre = centre.to(z0.dtype)
            zt = extract(self.sqrt_ac, t, z0) * (z0 - centre) + extract(self.sqrt_one_minus_ac, t, z0) * noise + centre
        return torch.where(target_mask[..., None], zt, z0)

    def embed_noise_std(self) -> float:
        """Std of q_φ(z_0 | w) = N(EMB(w), (1-ᾱ_0) I): the embedding step's noise."""
        return float(self.sqrt_one_minus_ac[0])

    def training_losses(
        self,
        model,
        ids: torch.Tensor,
        target_mask: torch.Tensor,
        t: torch.Tensor,
        eps0: torch.Tensor,
        noise: torch.Tensor,
        self_cond_mask: torch.Tensor | None = None,
        token_weight: float = 0.0,
        absorb: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        length_weight: float = 0.0,
    ) -> Losses:
        """The DiffuSeq objective (eq. 3) per sequence.

        ids, target_mask: (B, L); t: (B,) long; eps0, noise: (B, L, d) standard normal draws
        (passed in, so that callers control randomness across devices). With the model
        predicting z_0: MSE(z_0, f(z_t, t)) over target positions for t ≥ 1,
        MSE(EMB(w), f(z_1, 0)) at t = 0, plus the rounding term -log p(w | z_0) over all
        tokens and the prior term ‖sqrt(ᾱ_T) z_0‖² over target positions.
        ``self_cond_mask`` (B,) bool: where True, condition on a detached first estimate
        (self-conditioning, Chen et al. 2022); only for models built with it.
        ``token_weight`` > 0 adds that multiple of -log p(w | f(z_t, t)) over target positions:
        the head's cross-entropy on the prediction itself. Not in the paper's objective; a
        token-level signal that makes small models on small budgets learn far faster
        (docs/training.md).
        ``absorb`` (B, L) bool (see ``absorbing_positions``): these tokens enter the forward
        process in the model's learned absorbing state (DiffuSeq-v2's discrete noise, in the
        config's ``absorbing_kind``); every term still asks for the true words.
        ``key_mask`` (B, L) bool: the real positions (exact target regions: the batch padding
        after a sequence is neither attended to nor scored; ``target_mask`` must then be False
        there). ``length_weight`` > 0 adds that multiple of the length head's cross-entropy on
        the number of target words (exact regions only: the target part is [CLS] y [SEP]).
        """
        emb = model.embed(ids)  # (B, L, d)
        z0 = emb + self.embed_noise_std() * eps0.to(emb.dtype)
        centre = self.absorbing_centre(model)
        v2 = centre is not None
        if v2:  # z_t = sqrt(ᾱ)(z_0 - m) + sqrt(1-ᾱ) ε + m; an absorbed word is m itself
            centre = centre.to(emb.dtype)
            zt = self.q_sample(z0, t, noise.to(emb.dtype), target_mask, centre)
            if absorb is not None:
                zt = torch.where((absorb & target_mask)[..., None], centre.expand_as(zt), zt)
        else:
            z_in = z0
            if absorb is not None:
                state = model.absorbing_state.to(emb.dtype) + self.embed_noise_std() * eps0.to(emb.dtype)
                z_in = torch.where((absorb & target_mask)[..., None], state, z0)
            zt = self.q_sample(z_in, t, noise.to(emb.dtype), target_mask)
        mt = self.model_time(t)
        self_cond = None
        if model.config.self_condition:
            with torch.no_grad():
                first = model(zt, mt, None, target_mask=target_mask, key_mask=key_mask).detach()
            self_cond = torch.where(self_cond_mask[:, None, None], first, torch.zeros_like(first))
        pred = model(zt, mt, self_cond, target_mask=target_mask, key_mask=key_mask)  # (B, L, d)

        m = target_mask.to(emb.dtype)[..., None]  # (B, L, 1)
        count = (m.sum(dim=(1, 2)) * emb.shape[-1]).clamp_min(1.0)
        target = torch.where((t == 0)[:, None, None], emb, z0)
        mse = (((pred - target) ** 2) * m).sum(dim=(1, 2)) / count
        logits = model.logits(z0)  # (B, L, V)
        V = logits.shape[-1]
        # flattened (B·L, V) cross-entropy: same numbers, about twice as fast as the (B, V, L) layout
        ce0 = F.cross_entropy(logits.reshape(-1, V).float(), ids.reshape(-1), reduction="none").view(ids.shape)
        rounding = ce0.mean(dim=1) if key_mask is None else _masked_mean(ce0, key_mask)
        last = torch.full_like(t, self.num_steps - 1)
        far = z0 - centre if v2 else z0
        prior = ((extract(self.sqrt_ac, last, z0) * far) ** 2 * m).sum(dim=(1, 2)) / count
        loss = mse + rounding + prior
        if v2:  # DiffuSeq-v2 keeps the learned state near the origin with a small penalty on its norm
            loss = loss + V2_STATE_PENALTY * model.absorbing_state.float().norm()
        token = torch.zeros_like(mse)
        if token_weight > 0:
            ce = F.cross_entropy(model.logits(pred).reshape(-1, V).float(), ids.reshape(-1), reduction="none")
            token = _masked_mean(ce.view(ids.shape), target_mask)
            loss = loss + token_weight * token
        length = torch.zeros_like(mse)
        if length_weight > 0:
            source = ~target_mask if key_mask is None else (~target_mask & key_mask)
            words = (target_mask.sum(dim=1) - 2).clamp(0, model.config.max_positions - 1)  # [CLS] y [SEP]
            length = F.cross_entropy(model.length_logits(ids, source, emb).float(), words, reduction="none")
            loss = loss + length_weight * length
        return Losses(loss=loss, mse=mse, rounding=rounding, prior=prior, token=token, length=length)

    def absorbing_centre(self, model) -> torch.Tensor | None:
        """The learned state m a DiffuSeq-v2 model's process is centred on (training and sampling);
        None for other models."""
        if self.config.absorbing_kind == "v2" and getattr(model.config, "absorbing_state", False):
            return model.absorbing_state
        return None

    def absorb_probability(self, t: torch.Tensor | int, share: float) -> torch.Tensor:
        """The probability that a target word is in the absorbing state at timestep t (0-based).

        "replace" (ours): share·(t+1)/T, linear in t. "v2" (DiffuSeq-v2): share·sqrt(1-ᾱ_t), the
        noise level itself. Training draws with it; re-masking at sampling puts the same share back.
        """
        t = torch.as_tensor(t)
        if self.config.absorbing_kind == "v2":
            return share * self.sqrt_one_minus_ac.to(t.device)[t].float()
        return share * (t.float() + 1) / self.num_steps


V2_STATE_PENALTY = 0.01  # DiffuSeq-v2's weight on ‖m‖₂


def absorbing_positions(u: torch.Tensor, p: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Target tokens that take the absorbing state: those whose uniform draw u (B, L) is below p (B,).

    ``p`` comes from ``Diffusion.absorb_probability``: it grows with the noise level, as in
    absorbing discrete diffusion, so that at low noise the model mostly denoises and at high
    noise it mostly fills in, as a masked LM does.
    """
    return (u < p.to(u.dtype)[:, None]) & target_mask
