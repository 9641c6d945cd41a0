"""SamplingConfig: every sampling default and every check, in one place.

``diffuseq generate`` maps its flags to it, the Python API builds it from its keyword
arguments and the training probe from its run settings; none of them writes a default of
its own. Fields left ``None`` take the model's own value (its ``config.json``), resolved by
the ``*_for`` methods; :meth:`SamplingConfig.check` says what a given model cannot do.
Errors name fields (``steps``); the CLI shows them as flags (``--steps``).

This module imports no torch, so the CLI can read the defaults for its ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import LENGTH_MODES, REMASK_SCHEDULES, ROUNDINGS, SAMPLERS
from ..errors import FieldError, at_least, literal

# A sampler's steps when neither the caller (`generate --steps`, the API, the training probe) nor the
# model (config.json "decoding") says: 20 for DDIM (the default before models said), 10 for
# DPM-Solver++ (DiffuSeq-v2's); ddpm takes all of the model's T.
SAMPLER_STEPS = {"ddim": 20, "dpm++": 10}
# `generate` on a CPU without --nproc: one worker per usable core (one thread each), at most this many;
# on these 2 cores two one-thread workers beat one two-thread process (docs/benchmarks.md, "Fewer steps", its last paragraph).
CPU_PROCESSES = 8


@dataclass(frozen=True)
class SamplingConfig:
    # Denoising steps. None: the model's own for its sampler (config.json "decoding"), else
    # SAMPLER_STEPS's, or all of the model's T with ddpm.
    steps: int | None = None
    # ddim or dpm++ (deterministic, over the visited steps) or ddpm (ancestral). None: the model's
    # own (config.json "decoding"; ddim for older folders).
    sampler: str | None = None
    eta: float = 0.0  # DDIM's η (0: deterministic)
    seed: int = 0
    # How the target region is sized: "predict" (the model's length head; exactly the predicted
    # length), "auto" (from the training length statistics, padded), "full" (seq_len, official).
    # None: predict for models with a length head, else auto.
    length: str | None = None
    lengths: int | None = None  # with "predict": the length beam; None: the model's (config.json "decoding")
    multiple: int = 8  # round sequence lengths up to this, so more lines share a batch (auto)
    rounding: str | None = None  # l2 | logits | soft | none; None: the model's own (config.json "diffusion")
    # 1: start from pure noise (the paper). Below 1: start from the source copied into the target
    # part, noised to timestep strength·(T-1), and denoise from there (SDEdit, Meng et al. 2022):
    # outputs stay closer to the source as the strength falls.
    strength: float = 1.0
    # Put the least confident words back in the absorbing state at each step, in the share the
    # model was trained with (mask-predict). None: when the model was trained with an absorbing state.
    remask: bool | None = None
    remask_schedule: str = "trained"  # remasking.Remasking: the training share, or mask-predict's linear decay
    # Also re-mask a word equal to the one before it. None: on for models trained with exact
    # regions or DiffuSeq-v2's state (format 3), off for older ones, which decode as before.
    remask_repeats: bool | None = None
    # Collapse runs of the same word in the decoded text ("so so so big" -> "so big"): the usual
    # post-processing of non-autoregressive outputs (Gu et al. 2018). None: the model's
    # (config.json "decoding"; off for older folders: the paper's decoding).
    dedup: bool | None = None
    batch_size: int = 64  # candidates per model call: memory and speed, never the results

    def __post_init__(self):
        for name in ("steps", "lengths", "multiple", "batch_size"):
            at_least(name, getattr(self, name))
        if self.sampler not in (None, *SAMPLERS):
            raise FieldError(f"{{sampler}} must be one of {', '.join(SAMPLERS)}, got {literal(repr(self.sampler))}")
        if self.eta < 0:
            raise FieldError(f"{{eta}} must be 0 or more, got {self.eta}")
        if self.length not in (None, *LENGTH_MODES):
            raise FieldError(f"{{length}} must be one of {', '.join(LENGTH_MODES)}, got {literal(repr(self.length))}")
        if self.remask_schedule not in REMASK_SCHEDULES:
            raise FieldError(f"{{remask_schedule}} must be one of {', '.join(REMASK_SCHEDULES)}, got {literal(repr(self.remask_schedule))}")
        if not 0.0 < self.strength <= 1.0:
            raise FieldError(f"{{strength}} must be in (0, 1], got {self.strength}")
        if self.rounding not in (None, *ROUNDINGS):
            raise FieldError(f"{{rounding}} must be one of {', '.join(ROUNDINGS)}, got {literal(repr(self.rounding))}")

    # What a given model gets: the fields, with None resolved from the model's config.json.

    def check(self, config) -> None:
        """Raise FieldError when ``config``'s model cannot sample as asked (before any work starts)."""
        T = config.diffusion.steps
        if not 1 <= self.steps_for(config) <= T:
            raise FieldError(f"{{steps}} must be between 1 and the model's T = {T}")
        mode = self.length_for(config)
        self.remask_share_for(config)
        if mode != "predict" and self.lengths is not None and self.lengths > 1:
            raise FieldError("{lengths} needs {length} predict (a model with a length head)")

    def sampler_for(self, config) -> str:
        """The sampler used: ``sampler``, else the model's (config.json "decoding")."""
        return self.sampler or config.decoding.sampler

    def steps_for(self, config) -> int:
        """The denoising steps asked for: ``steps``; else the model's own when its sampler is used;
        else the sampler's default (SAMPLER_STEPS), at most T; ddpm: T."""
        if self.steps is not None:
            return self.steps
        sampler, own, T = self.sampler_for(config), config.decoding, config.diffusion.steps
        if sampler == own.sampler and own.steps is not None:
            return min(own.steps, T)
        return min(SAMPLER_STEPS[sampler], T) if sampler in SAMPLER_STEPS else T

    def start_step(self, T: int) -> int:
        """The timestep sampling starts from: strength·(T-1) (T-1 from pure noise)."""
        return round(self.strength * (T - 1))

    def visited_steps(self, config) -> list[int]:
        """The timesteps a sample visits: ``steps_for`` from ``start_step`` down to 0, at most all of them."""
        from ..core.sampling import step_schedule  # torch-free function in a torch module: imported when sampling

        T = config.diffusion.steps
        start = self.start_step(T)
        return step_schedule(min(self.steps_for(config), start + 1), T, start)

    def length_for(self, config) -> str:
        """The region sizing used: ``length``, or predict for models with a length head, else auto."""
        has_head = config.model.length_head
        if self.length == "predict" and not has_head:
            raise FieldError("{length} predict needs a model trained with a length head (train --regions exact)")
        return self.length or ("predict" if has_head else "auto")

    def lengths_for(self, config) -> int:
        return self.lengths or config.decoding.lengths

    def rounding_for(self, config) -> str:
        return self.rounding or config.diffusion.rounding

    def remask_share_for(self, config) -> float:
        """The share re-masked at each step: the model's training share when asked (None: when it
        has one), 0 when not; asking a model without an absorbing state is an error."""
        has = config.model.absorbing_state and config.diffusion.absorbing > 0
        if self.remask and not has:
            raise FieldError("{remask} needs a model trained with `train --absorbing` (this one has no absorbing state)")
        return config.diffusion.absorbing if has and self.remask is not False else 0.0

    def remask_repeats_for(self, config) -> bool:
        """As asked, else on for models of the exact-region / DiffuSeq-v2 recipe."""
        if self.remask_repeats is not None:
            return self.remask_repeats
        return config.sequence.regions == "exact" or config.diffusion.absorbing_kind == "v2"

    def dedup_for(self, config) -> bool:
        return config.decoding.dedup if self.dedup is None else self.dedup
