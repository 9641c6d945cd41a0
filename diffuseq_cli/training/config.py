"""Training settings as one frozen dataclass, plus named recipes.

A recipe is a set of defaults; explicit options override it. ``paper`` is the
paper's recipe (section 4.1: AdamW at 1e-4 decaying linearly to 0, no warmup or
clipping, EMA 0.9999, T = 2000, d = 128, 128 positions, the paper's loss and L2 rounding);
``fast`` is ours, tuned for small models on modest hardware: warm-up and clipping, the token
loss, segment positions, no dropout, head-argmax rounding, DiffuSeq-v2's learned absorbing
state, exact target regions with a length head (docs/training.md: how it was chosen).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ABSORBING_KINDS, POSITIONS, PRECISIONS, PRESETS, REGIONS, ROUNDINGS
from ..errors import FieldError, UsageError, at_least, literal

TIMESTEP_SAMPLERS = ("loss-aware", "uniform")  # --timesteps: the paper's importance sampling, or uniform

DEFAULT_LENGTH_LOSS = 0.1  # small: the length head must not steer the shared training
DEFAULT_PRESET = "small"  # the model size without --preset and without --init
# Model settings that a recipe gives but a starting model (--init) decides when not given explicitly.
SHAPE_SETTINGS = ("embed_dim",)

RECIPES: dict[str, dict] = {
    "paper": dict(
        lr=1e-4, warmup=0, grad_clip=0.0, ema=0.9999, ema_warmup=False, diffusion_steps=2000, schedule="sqrt",
        seq_len=128, weight_decay=0.0, embed_dim=128, self_condition=False, token_loss=0.0, dropout=None,
        rounding="l2", positions="absolute", absorbing=0.0, absorbing_kind="replace", regions="padded", length_loss=0.0,
    ),
    "fast": dict(
        lr=1e-3, warmup=500, grad_clip=1.0, ema=0.9999, ema_warmup=True, diffusion_steps=2000, schedule="sqrt",
        seq_len=64, weight_decay=0.0, embed_dim=None, self_condition=False, token_loss=1.0, dropout=0.0,
        rounding="logits", positions="segment", absorbing=0.5, absorbing_kind="v2", regions="exact", length_loss=0.0,
    ),
}

_FAST = RECIPES["fast"]


@dataclass(frozen=True)
class TrainConfig:
    """One run's settings. Fields a recipe sets default to the ``fast`` recipe's value (``RECIPES``)."""

    data: str
    out: str = "runs/diffuseq"
    valid: str | None = None
    tokenizer: str | None = None  # tokenizer.json or vocab.txt; default: train a BPE on the data
    vocab_size: int = 8000
    recipe: str = "fast"
    preset: str | None = None  # None: DEFAULT_PRESET, or with ``init`` the starting model's sizes
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields from --config
    seq_len: int = _FAST["seq_len"]
    diffusion_steps: int = _FAST["diffusion_steps"]
    schedule: str = _FAST["schedule"]
    timesteps: str = "loss-aware"  # how training draws t: loss-aware (the paper, eq. 4) | uniform
    embed_dim: int | None = _FAST["embed_dim"]  # d; None: the preset's (with ``init``: the starting model's)
    self_condition: bool = _FAST["self_condition"]
    positions: str = _FAST["positions"]  # absolute (the official model) | segment (numbered per source/target part)
    token_loss: float = _FAST["token_loss"]  # weight of the head's cross-entropy on the prediction (0: the paper's loss)
    dropout: float | None = _FAST["dropout"]  # None: the preset's (with ``init``: the starting model's)
    rounding: str = _FAST["rounding"]  # how the trained model's reverse process rounds (stored in its config.json)
    absorbing: float = _FAST["absorbing"]  # share of target tokens put in the learned absorbing state at t = T (0: off)
    absorbing_kind: str = _FAST["absorbing_kind"]  # v2 (DiffuSeq-v2 as published) | replace (ours before); config.ABSORBING_KINDS
    regions: str = _FAST["regions"]  # target regions: exact (the target alone, length head) | padded (target, then [PAD]s)
    length_loss: float = _FAST["length_loss"]  # weight of the length head's cross-entropy (exact regions; 0 there: 0.1)
    init: str | None = None  # a model folder or a BERT (folder or Hub id) whose weights (and tokenizer) the run starts from
    init_source: str | None = None  # where ``init`` was found (local:PATH or hub:REPO@COMMIT); set by prepare_run
    steps: int = 10000
    batch_size: int = 64  # global, across devices and accumulation
    microbatch: int | None = None  # per device; default: the whole local batch
    lr: float = _FAST["lr"]
    warmup: int = _FAST["warmup"]
    weight_decay: float = _FAST["weight_decay"]
    grad_clip: float = _FAST["grad_clip"]
    ema: float = _FAST["ema"]
    ema_warmup: bool = _FAST["ema_warmup"]  # decay min(ema, (1+n)/(10+n)): short runs get a useful average
    precision: str | None = None  # fp32 | bf16 | fp16; default bf16 on capable GPUs, else fp32
    seed: int = 0
    save_every: int = 1000
    keep: int = 3  # numbered checkpoints kept (0: all)
    log_every: int = 10
    valid_every: int = 500
    eval_bleu_every: int = 0  # 0: off
    eval_lines: int = 64
    eval_sample_steps: int | None = None  # the probe's DDIM steps; None: generate's default
    device: str = "auto"  # auto | cpu | cuda
    gpus: tuple[int, ...] = ()  # CUDA device ids, one process each
    nproc: int = 1  # processes on CPU (gloo)
    max_minutes: float = 0.0  # stop (and save) after this wall time; 0: no limit

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise UsageError(f"unknown recipe {literal(repr(self.recipe))}; choose from {', '.join(RECIPES)}")
        if self.preset is None and not self.init:
            object.__setattr__(self, "preset", DEFAULT_PRESET)  # frozen: the one normalisation of a default
        if self.preset is not None and self.preset not in PRESETS:
            raise UsageError(f"unknown preset {literal(repr(self.preset))}; choose from {', '.join(PRESETS)}")
        if self.precision not in (None, *PRECISIONS):
            raise FieldError("{precision} must be fp32, bf16 or fp16")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise FieldError(f"{{device}} must be auto, cpu, cuda or cuda:N, not {literal(repr(self.device))}")
        if self.gpus and (len(set(self.gpus)) != len(self.gpus) or min(self.gpus) < 0):
            raise FieldError(f"{{gpus}} lists each device once, as non-negative ids (got {','.join(map(str, self.gpus))})")
        if self.gpus and self.device == "cpu":
            raise FieldError("{gpus} and {device} cpu contradict each other")
        for name in ("steps", "batch_size", "nproc", "save_every", "log_every", "seq_len", "diffusion_steps", "vocab_size"):
            at_least(name, getattr(self, name))
        at_least("microbatch", self.microbatch)
        if self.seq_len < 8:
            raise FieldError("{seq_len} must be at least 8 (5 positions go to the special tokens)")
        if not (math.isfinite(self.token_loss) and self.token_loss >= 0):
            raise FieldError(f"{{token_loss}} must be a finite number, 0 or more (got {self.token_loss})")
        if not 0.0 <= self.absorbing <= 1.0:  # also rejects NaN
            raise FieldError(f"{{absorbing}} must be in [0, 1] (got {self.absorbing})")
        if self.absorbing_kind not in ABSORBING_KINDS:
            raise FieldError(f"{{absorbing_kind}} must be one of {', '.join(ABSORBING_KINDS)}, not {literal(repr(self.absorbing_kind))}")
        if self.regions not in REGIONS:
            raise FieldError(f"{{regions}} must be one of {', '.join(REGIONS)}, not {literal(repr(self.regions))}")
        if not (math.isfinite(self.length_loss) and self.length_loss >= 0):
            raise FieldError(f"{{length_loss}} must be a finite number, 0 or more (got {self.length_loss})")
        if self.length_loss > 0 and self.regions != "exact":
            raise FieldError("{length_loss} trains a length head, which needs {regions} exact")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise FieldError("{dropout} must be in [0, 1)")
        if self.timesteps not in TIMESTEP_SAMPLERS:
            raise FieldError(f"{{timesteps}} must be loss-aware or uniform, not {literal(repr(self.timesteps))}")
        if self.positions not in POSITIONS:
            raise FieldError(f"{{positions}} must be one of {', '.join(POSITIONS)}, not {literal(repr(self.positions))}")
        if self.rounding not in ROUNDINGS:
            raise FieldError(f"{{rounding}} must be one of {', '.join(ROUNDINGS)}, not {literal(repr(self.rounding))}")
        world = self.world_size
        if self.batch_size % world:
            raise FieldError(f"{{batch_size}} {self.batch_size} is not divisible by the {world} processes")

    @property
    def length_weight(self) -> float:
        """The length head's loss weight: exact regions always train one (0.1 unless set)."""
        if self.regions != "exact":
            return 0.0
        return self.length_loss or DEFAULT_LENGTH_LOSS

    @property
    def world_size(self) -> int:
        return len(self.gpus) if self.gpus else max(1, self.nproc)

    def to_json(self, **extra) -> str:
        """The config as JSON; ``extra`` keys (like the resolved model) are written too and ignored on reading."""
        return json.dumps({**dataclasses.asdict(self), **extra}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        data = json.loads(text)
        data["gpus"] = tuple(data.get("gpus", ()))
        for name, value in _BEFORE_LEVERS.items():  # runs saved before these settings existed
            data.setdefault(name, value)
        if data.get("init") and "init_source" not in data:
            data["preset"] = None  # saved before --init could be a BERT: the preset was ignored, not chosen
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# What runs saved before the token loss, segment positions, dropout and rounding options trained with.
_BEFORE_LEVERS = {"timesteps": "loss-aware", "positions": "absolute", "token_loss": 0.0, "dropout": None, "rounding": "l2",
                  "absorbing": 0.0, "absorbing_kind": "replace", "regions": "padded", "length_loss": 0.0}


def with_recipe(recipe: str, **explicit) -> TrainConfig:
    """A TrainConfig from a recipe's defaults, with explicitly given options (not None) on top."""
    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    values = dict(RECIPES[recipe])
    given = {k: v for k, v in explicit.items() if v is not None}
    if given.get("init"):  # the starting model decides its shape, unless an option says otherwise
        for name in SHAPE_SETTINGS:
            values[name] = None
    values.update(given)
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise UsageError(f"unknown training setting(s): {', '.join(unknown)}")
    return TrainConfig(recipe=recipe, **values)


_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def default(name: str):
    """TrainConfig's default for a field (a recipe's fields: the ``fast`` recipe's value)."""
    f = TrainConfig.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def describe_default(name: str) -> str:
    """A field's default as ``--help`` states it: per recipe where the recipes differ."""
    def show(value) -> str:
        if value is None:
            return "the preset's"
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)

    first = default("recipe")  # the default recipe's value first
    per_recipe = {recipe: values[name] for recipe, values in sorted(RECIPES.items(), key=lambda kv: kv[0] != first)
                  if name in values}
    if per_recipe and len(set(map(repr, per_recipe.values()))) > 1:
        return ", ".join(f"{show(v)} with {recipe}" for recipe, v in per_recipe.items())
    return show(default(name))

# What a resumed run may change: how long and where it runs, how often it saves and logs.
# Everything else (model, data layout, optimiser) is fixed by the run's config.json.
RESUME_OVERRIDABLE = frozenset({
    "data", "valid", "out", "steps", "max_minutes", "device", "gpus", "nproc", "microbatch", "precision",
    "save_every", "keep", "log_every", "valid_every", "eval_bleu_every", "eval_lines", "eval_sample_steps",
})


def read_run_config(run: str | Path) -> TrainConfig | None:
    """The TrainConfig saved in a run folder, or None when the folder has none."""
    path = Path(run) / "config.json"
    if not path.exists():
        return None
    try:
        return TrainConfig.from_json(path.read_text())
    except FieldError:
        raise  # a setting out of range: the message names it
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not a training configuration ({exc})") from None


def resume_config(saved: TrainConfig, **explicit) -> TrainConfig:
    """The saved run's config with the explicitly given options (not None) that a resume may change."""
    changes = {k: v for k, v in explicit.items() if v is not None}
    fixed = sorted(k for k, v in changes.items() if k not in RESUME_OVERRIDABLE and getattr(saved, k, v) != v)
    if fixed:
        names = ", ".join("{%s}" % k for k in fixed)
        raise FieldError(f"cannot change {names} when resuming {literal(saved.out)}; start a new run (another {{out}}) instead")
    return dataclasses.replace(saved, **{k: v for k, v in changes.items() if k in RESUME_OVERRIDABLE})


def check_resumable(saved: TrainConfig, cfg: TrainConfig) -> None:
    """Raise UsageError when ``cfg`` changes a setting that a resumed run must keep."""
    resume_config(saved, **{f: getattr(cfg, f) for f in _FIELDS})


def read_config_file(path: str | Path) -> tuple[dict, dict]:
    """``--config FILE``: a JSON object of ModelConfig fields, optionally with training fields under "train".

    Returns (model overrides, training overrides), both checked against the known field names.
    """
    from ..config import ModelConfig

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    train = data.pop("train", {})
    if not isinstance(train, dict):
        raise UsageError(f"{path}: \"train\" must be a JSON object of training settings")
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size", "absorbing_state"}
    bad = sorted(set(data) - model_fields)
    if bad:
        hint = " (set the vocabulary with {vocab_size})" if "vocab_size" in bad else ""
        hint += " (the absorbing state follows {absorbing})" if "absorbing_state" in bad else ""
        raise FieldError(f"{literal(path)}: unknown model field(s) {literal(', '.join(bad))}{hint}; known: {', '.join(sorted(model_fields))}")
    bad = sorted(set(train) - (_FIELDS - {"model_overrides"}))
    if bad:
        raise UsageError(f"{path}: unknown training setting(s) under \"train\": {', '.join(bad)}")
    if "gpus" in train:
        train["gpus"] = tuple(train["gpus"])
    return data, train


def read_model_overrides(path: str | Path) -> dict:
    """The model part of ``--config FILE`` (see ``read_config_file``)."""
    return read_config_file(path)[0]


def resolve_config(explicit: dict, config_file: str | Path | None = None, resume: bool = False) -> TrainConfig:
    """The command line's TrainConfig: recipe defaults < ``--config`` file < explicit options.

    ``explicit`` holds the options as given (None: not given). With ``resume`` and a run
    folder that has a saved config, that config is the base instead, and only the options a
    resumed run may change (``RESUME_OVERRIDABLE``) may differ from it.
    """
    given = {k: v for k, v in explicit.items() if v is not None}
    model_overrides, file_train = read_config_file(config_file) if config_file else ({}, {})
    for name in ("embed_dim", "self_condition", "dropout", "positions"):  # an explicit option beats the file's model field
        if name in given:
            model_overrides.pop(name, None)
    values = {**file_train, **given}
    if config_file:
        values["model_overrides"] = model_overrides
    saved = read_run_config(values.get("out", default("out"))) if resume else None
    if saved is not None:
        return resume_config(saved, **values)
    recipe = values.pop("recipe", default("recipe"))
    return with_recipe(recipe, **values)
