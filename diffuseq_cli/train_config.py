"""Training settings as one frozen dataclass, plus named recipes.

A recipe is a set of defaults; explicit options override it. ``paper`` is the
paper's recipe (section 4.1: AdamW at 1e-4 decaying linearly to 0, no warmup or
clipping, EMA 0.9999, T = 2000, d = 128, 128 positions); ``fast`` is ours, tuned
for small models on modest hardware (see docs/training.md for how it was chosen).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import PRESETS
from .errors import UsageError

RECIPES: dict[str, dict] = {
    "paper": dict(
        lr=1e-4, warmup=0, grad_clip=0.0, ema=0.9999, ema_warmup=False, diffusion_steps=2000, schedule="sqrt",
        seq_len=128, weight_decay=0.0, embed_dim=128, self_condition=False,
    ),
    "fast": dict(
        lr=1e-3, warmup=500, grad_clip=1.0, ema=0.9999, ema_warmup=True, diffusion_steps=2000, schedule="sqrt",
        seq_len=64, weight_decay=0.0, embed_dim=None, self_condition=False,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str = "runs/diffuseq"
    valid: str | None = None
    tokenizer: str | None = None  # tokenizer.json or vocab.txt; default: train a BPE on the data
    vocab_size: int = 8000
    recipe: str = "fast"
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields from --config
    seq_len: int = 64
    diffusion_steps: int = 2000
    schedule: str = "sqrt"
    embed_dim: int | None = None  # d; None: the preset's
    self_condition: bool = False
    steps: int = 10000
    batch_size: int = 64  # global, across devices and accumulation
    microbatch: int | None = None  # per device; default: the whole local batch
    lr: float = 1e-3
    warmup: int = 500
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.9999
    ema_warmup: bool = True  # decay min(ema, (1+n)/(10+n)): short runs get a useful average
    precision: str | None = None  # fp32 | bf16 | fp16; default bf16 on capable GPUs, else fp32
    seed: int = 0
    save_every: int = 1000
    keep: int = 3  # numbered checkpoints kept (0: all)
    log_every: int = 10
    valid_every: int = 500
    eval_bleu_every: int = 0  # 0: off
    eval_lines: int = 64
    eval_sample_steps: int = 20
    device: str = "auto"  # auto | cpu | cuda
    gpus: tuple[int, ...] = ()  # CUDA device ids, one process each
    nproc: int = 1  # processes on CPU (gloo)
    max_minutes: float = 0.0  # stop (and save) after this wall time; 0: no limit

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise UsageError(f"unknown recipe {self.recipe!r}; choose from {', '.join(RECIPES)}")
        if self.preset not in PRESETS:
            raise UsageError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if self.precision not in (None, "fp32", "bf16", "fp16"):
            raise UsageError("--precision must be fp32, bf16 or fp16")
        world = self.world_size
        if self.batch_size % world:
            raise UsageError(f"--batch-size {self.batch_size} is not divisible by the {world} processes")
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError("--steps and --batch-size must be positive")

    @property
    def world_size(self) -> int:
        return len(self.gpus) if self.gpus else max(1, self.nproc)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = json.loads(text)
        data["gpus"] = tuple(data.get("gpus", ()))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def with_recipe(recipe: str, **explicit) -> TrainConfig:
    """A TrainConfig from a recipe's defaults, with explicitly given options (not None) on top."""
    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    values = dict(RECIPES[recipe])
    values.update({k: v for k, v in explicit.items() if v is not None})
    return TrainConfig(recipe=recipe, **values)


def read_model_overrides(path: str | Path) -> dict:
    """``--config FILE``: a JSON object of ModelConfig fields (and optionally training fields under "train")."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data
