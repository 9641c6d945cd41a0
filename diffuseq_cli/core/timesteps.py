"""Which timesteps training draws: the paper's loss-aware importance sampling (eq. 4), or uniform.

Its own file, as improved-diffusion's ``resample.py``: the forward process (``diffusion.py``)
does not depend on how t is chosen.
"""

from __future__ import annotations

import numpy as np
import torch


class LossAwareTimesteps:
    """Importance sampling of timesteps, p_t ∝ sqrt(E[L_t²]) (paper eq. 4; Nichol & Dhariwal 2021).

    Uniform until every t has ``history`` recorded losses; a small uniform share stays mixed in.
    With ``adaptive=False`` it stays uniform (``--timesteps uniform``): with the token loss the
    noisiest steps dominate sqrt(E[L²]) and would take most of the samples.
    Its state is part of a training checkpoint so that a resumed run draws the same timesteps.
    """

    def __init__(self, num_steps: int, history: int = 10, uniform_prob: float = 0.001, adaptive: bool = True):
        self.adaptive = adaptive
        self.num_steps = num_steps
        self.history = history
        self.uniform_prob = uniform_prob
        self.losses = np.zeros((num_steps, history), dtype=np.float64)
        self.counts = np.zeros(num_steps, dtype=np.int64)

    def weights(self) -> np.ndarray:
        if not self.adaptive or not (self.counts == self.history).all():
            return np.ones(self.num_steps, dtype=np.float64)
        w = np.sqrt(np.mean(self.losses**2, axis=-1))
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.num_steps

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (t (B,) long, importance weight 1/(T p_t) (B,) float32)."""
        w = self.weights()
        p = torch.from_numpy(w / w.sum())
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        weight = 1.0 / (self.num_steps * p[t])
        return t, weight.float()

    def update(self, t: list[int], losses: list[float]) -> None:
        """Record per-timestep losses (all ranks' values, in the same order on every rank)."""
        for ti, li in zip(t, losses):
            if self.counts[ti] == self.history:
                self.losses[ti, :-1] = self.losses[ti, 1:]
                self.losses[ti, -1] = li
            else:
                self.losses[ti, self.counts[ti]] = li
                self.counts[ti] += 1

    def state_dict(self) -> dict:
        return {"losses": torch.from_numpy(self.losses.copy()), "counts": torch.from_numpy(self.counts.copy())}

    def load_state_dict(self, state: dict) -> None:
        self.losses = state["losses"].numpy().astype(np.float64).copy()
        self.counts = state["counts"].numpy().astype(np.int64).copy()
