"""The small public Python API (documented with runnable examples in docs/api.md).

```python
from diffuseq_cli import DiffuSeq
m = DiffuSeq.from_pretrained("path/to/model-folder")     # or a task, an official .pt, ORG/NAME
m.generate(["how do i learn python?"], num_samples=3, steps=20)
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from .core.diffusion import Diffusion
from .core.samplers import make_sampler
from .core.sampling import SampleOutput, sample_loop, step_schedule
from .generation.batches import generate_texts
from .generation.config import SamplingConfig
from .modelfiles.folder import LoadedModel, load_model_folder, save_model_folder


class DiffuSeq:
    """A loaded DiffuSeq model: its denoiser, diffusion process and tokenizer."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "cpu"):
        self.loaded = loaded
        self.device = torch.device(device)
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.config = loaded.config
        self.diffusion = Diffusion(loaded.config.diffusion)

    @classmethod
    def from_pretrained(
        cls, spec: str | Path | None = None, *, task: str | None = None, device: str = "cpu",
        tokenizer: str | Path | None = None, num_heads: int = 12, quiet: bool = True,
    ) -> "DiffuSeq":
        """Load a model folder, an official ``.pt`` (converted in memory), a Hub repo ``ORG/NAME[@REV]``, or a task's model."""
        from .errors import at_least
        from .modelfiles.hub import resolve_model
        from .modelfiles.official import load_official

        at_least("num_heads", num_heads)  # before any download or load
        resolved = resolve_model(str(spec) if spec is not None else None, task=task, quiet=quiet)
        if resolved.kind == "official":
            loaded = load_official(resolved.path, tokenizer_path=tokenizer, num_heads=num_heads)
        else:
            loaded = load_model_folder(resolved.path)
        return cls(loaded, device)

    def save_pretrained(self, folder: str | Path, card: str | None = None) -> None:
        """Write this model as a model folder (atomic)."""
        card = card or f"# DiffuSeq model\n\nSource: {self.config.source or 'unknown'}\n"
        save_model_folder(Path(folder), self.config, self.model, self.tokenizer, card)

    @torch.inference_mode()
    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, target_mask: torch.Tensor | None = None) -> torch.Tensor:
        """f_theta(z_t, t): z_t (B, L, d), integer timesteps t (B,) in 0..T-1 -> predicted z_0 (B, L, d).

        ``target_mask`` (B, L), True on the target part: required by models with ``positions="segment"``.
        """
        mask = None if target_mask is None else target_mask.bool().to(self.device)
        return self.model(z_t.to(self.device), self.diffusion.model_time(t.to(self.device)), target_mask=mask)

    @torch.inference_mode()
    def sample(
        self, z_T: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor, steps: int | Sequence[int] | None = None,
        sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None, rounding: bool | str | None = None,
    ) -> SampleOutput:
        """Run the reverse process from z_T (B, L, d) given ids (B, L) and target_mask (B, L) (True/1 on generated positions).

        ``steps``: a number of evenly spaced steps, an explicit descending list of timesteps, or None (all T).
        ``sampler``: ddim, dpm++ (DPM-Solver++(2M)) or ddpm. ``generator`` drives the noise of
        stochastic samplers (ddpm, or ddim with eta > 0).
        ``rounding``: "l2", "logits", "soft" or "none" (True/False: l2/none); None: the model's own.
        """
        T = self.diffusion.num_steps
        schedule = step_schedule(steps or T, T) if steps is None or isinstance(steps, int) else list(steps)
        mask = target_mask.bool().to(self.device)
        src = self.model.embed(input_ids.to(self.device))

        def noise_fn(i, like):
            return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)

        return sample_loop(self.model, self.diffusion, z_T.to(self.device), src, mask, schedule,
                           make_sampler(sampler, eta), noise_fn,
                           rounding=self.diffusion.config.rounding if rounding is None else rounding)

    def generate(self, sources: list[str], num_samples: int = 1, *, config: SamplingConfig | None = None,
                 **options) -> list[list[str]]:
        """``num_samples`` candidates per source, in order; deterministic for a given seed.

        ``options`` are :class:`~diffuseq_cli.generation.config.SamplingConfig` fields, the same
        settings as ``diffuseq generate``'s options and with the same defaults (the model's own
        sampler and steps, length sizing, rounding, re-masking and dedup; 20 DDIM steps for
        older models): ``steps``, ``sampler``, ``seed``, ``length``, ``lengths``, ``rounding``, ``strength``, ``remask``,
        ``remask_schedule``, ``remask_repeats``, ``dedup``, ``batch_size``, ``eta``. ``config``:
        a whole SamplingConfig to start from instead of the defaults.
        """
        config = dataclasses.replace(config or SamplingConfig(), **options)
        return generate_texts(self.loaded, sources, num_samples, config, device=self.device)
