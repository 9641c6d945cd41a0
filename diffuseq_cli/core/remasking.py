"""Re-masking (mask-predict, Ghazvininejad et al. 2019): before each reverse step, put the least
confident words back in the model's absorbing state, so that the next step decides them again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import REMASK_SCHEDULES
from .diffusion import Diffusion


def least_confident(confidence: torch.Tensor, target_mask: torch.Tensor, share: float) -> torch.Tensor:
    """(B, L) bool: in each row the round(share · targets) target positions of lowest confidence."""
    count = (target_mask.sum(dim=1).float() * share).round().long()  # (B,)
    order = torch.where(target_mask, confidence, torch.inf).argsort(dim=1, stable=True)  # least confident first
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < count[:, None]) & target_mask


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

    @staticmethod
    def absorb(z: torch.Tensor, doubtful: torch.Tensor, z0: torch.Tensor, a_prev: torch.Tensor,
               state: torch.Tensor, centre: torch.Tensor | None) -> torch.Tensor:
        """z_prev with the ``doubtful`` (B, L) positions put back in the absorbing state.

        DiffuSeq-v2 models (``centre`` = m): an absorbed word is m itself, clean. Others: the same
        ε, with the absorbing state as those words' z_0 (z_prev moves by sqrt(ᾱ_prev)(state - z_0)).
        """
        if centre is not None:
            return torch.where(doubtful[..., None], centre.expand_as(z), z)
        state = state.to(z.dtype)
        return z + torch.where(doubtful[..., None], a_prev.sqrt() * (state - z0), torch.zeros_like(z))


def repeated_words(words: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: target positions holding the same word as the target position before them."""
    same = torch.zeros_like(target_mask)
    same[:, 1:] = (words[:, 1:] == words[:, :-1]) & target_mask[:, 1:] & target_mask[:, :-1]
    return same
