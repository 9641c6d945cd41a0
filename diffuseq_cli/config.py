"""Configuration dataclasses: one per concern, validated on creation, stored in ``config.json``.

``ModelConfig`` is the denoiser's shape, ``DiffusionConfig`` the forward process,
``SequenceConfig`` how a (source, target) pair becomes one token sequence.
Presets name the sizes people ask for: ``tiny`` (tests), ``small`` (a CPU in
hours) and ``base`` (the paper, section 4.1: 12 layers, 12 heads, hidden 768,
d = 128, T = 2000, 128 positions).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

FORMAT_VERSION = 3  # the newest model-folder format this code reads (see ModelFolderConfig.written_version)
SCHEDULES = ("sqrt", "linear", "cosine")
ROUNDINGS = ("l2", "logits", "soft", "none")
POSITIONS = ("absolute", "segment")
# How training put target tokens in the absorbing state: "replace" (ours: the state stands in for
# the word's embedding and is noised like one, with probability share·(t+1)/T) or "v2" (DiffuSeq-v2
# as published: the Gaussian noise is centred on the state m, and an absorbed word is m itself,
# clean, with probability share·sqrt(1-ᾱ_t)).
ABSORBING_KINDS = ("replace", "v2")
REGIONS = ("padded", "exact")
# Sampling choices (generation.config.SamplingConfig checks against these; the classes and
# strategies they name live in core/samplers.py, core/rounding.py and core/remasking.py).
SAMPLERS = ("ddim", "ddpm", "dpm++")
PRECISIONS = ("fp32", "bf16", "fp16")  # of training and sampling (precision.autocast)
LENGTH_MODES = ("predict", "auto", "full")
REMASK_SCHEDULES = ("trained", "linear")


@dataclass(frozen=True)
class ModelConfig:
    """The transformer denoiser f_theta(z_t, t) -> z_0 (DESIGN.md section 3)."""

    vocab_size: int
    embed_dim: int = 128  # d: the word-embedding space diffusion runs in
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_size: int = 3072
    time_embed_dim: int = 128  # width of the sinusoidal timestep features
    max_positions: int = 128
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    self_condition: bool = False  # feed the previous z_0 estimate back as input
    # "absolute": one position index over the packed sequence (the official model). "segment":
    # positions restart at the target's first token, plus a learned source/target embedding, so
    # that target word j and source word j share a position (copying and alignment are one hop).
    positions: str = "absolute"
    # A learned vector that training puts in place of some noised target tokens (DiffuSeq-v2's
    # soft absorbing state; ``diffuseq train --absorbing``). Sampling starts from Gaussian noise
    # as before; the vector is kept so that a model can be trained further.
    absorbing_state: bool = False
    # A target-length classifier on the source (``train --regions exact``); ``generate --length
    # predict`` sizes the target region with it.
    length_head: bool = False

    def __post_init__(self):
        if self.vocab_size < 2:
            raise ValueError("vocab_size must be at least 2")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.time_embed_dim % 2:
            raise ValueError("time_embed_dim must be even")
        for name in ("embed_dim", "hidden_size", "num_layers", "ffn_size", "max_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.positions not in POSITIONS:
            raise ValueError(f"unknown positions {self.positions!r}; choose from {', '.join(POSITIONS)}")


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process q(z_t | z_0) and how timesteps reach the model."""

    steps: int = 2000  # T
    schedule: str = "sqrt"
    rescale_timesteps: bool = True  # the model sees t * 1000 / T, as the official code
    # How the reverse process rounds each z_0 estimate to a word: "l2" (nearest embedding, the
    # paper's), "logits" (the head's argmax), "soft" (the expected embedding under the head; both
    # for models trained with a token loss), or "none".
    rounding: str = "l2"
    # Share of target tokens training put in the absorbing state at t = T (``train --absorbing``;
    # 0: none). ``generate --remask`` puts the same share back at each step.
    absorbing: float = 0.0
    absorbing_kind: str = "replace"

    def __post_init__(self):
        if self.absorbing_kind not in ABSORBING_KINDS:
            raise ValueError(f"unknown absorbing kind {self.absorbing_kind!r}; choose from {', '.join(ABSORBING_KINDS)}")
        if self.steps < 1:
            raise ValueError("diffusion steps must be positive")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"unknown rounding {self.rounding!r}; choose from {', '.join(ROUNDINGS)}")
        if not 0.0 <= self.absorbing <= 1.0:
            raise ValueError(f"absorbing share must be in [0, 1], got {self.absorbing}")


@dataclass(frozen=True)
class SequenceConfig:
    """Packing ``[CLS] x [SEP] [SEP] [CLS] y [SEP] [PAD]...`` (the official layout) and length facts."""

    seq_len: int = 128
    pad_id: int = 0
    cls_id: int = 2
    sep_id: int = 3
    # Target lengths (tokens, specials included) seen in training: used to size the
    # target region at generation time instead of always paying for seq_len positions.
    target_len_p99: int = 0
    target_ratio_p99: float = 0.0
    # The target regions training showed the model: "padded" (the target, then [PAD] up to the
    # batch's longest: the model learns to end with padding) or "exact" (the target alone, batch
    # padding hidden from attention: the region must be sized right, by the length head).
    regions: str = "padded"

    def __post_init__(self):
        if self.regions not in REGIONS:
            raise ValueError(f"unknown regions {self.regions!r}; choose from {', '.join(REGIONS)}")
        if self.seq_len < 6:
            raise ValueError("seq_len must be at least 6 (room for the special tokens)")


@dataclass(frozen=True)
class DecodingConfig:
    """How a model's outputs are best decoded, as its maker measured it; ``generate`` options override.

    Older folders have none of it and decode as before.
    """

    # The sampler and its steps (``generate --sampler/--steps``): the fewest steps that lose nothing
    # against many, measured for this model (docs/benchmarks.md). None: the sampler's own default
    # (generation.config.SAMPLER_STEPS), as for older folders.
    sampler: str = "ddim"
    steps: int | None = None
    lengths: int = 1  # the length beam of --length predict (candidate k takes the (k mod K)-th likeliest length)
    dedup: bool = False  # collapse runs of the same word in the decoded text
    avoid_copy: bool = False  # with MBR: the best candidate that is not the source itself (paraphrasing)
    keep_mood: bool = False  # with MBR: a question's output a question, a statement's a statement
    whole_words: bool = False  # with MBR: the candidates with the fewest made-up words (evaluation/choice.py)

    def __post_init__(self):
        if self.lengths < 1:
            raise ValueError("decoding.lengths must be positive")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown decoding.sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError("decoding.steps must be positive")


@dataclass(frozen=True)
class ModelFolderConfig:
    """Everything ``config.json`` of a model folder holds."""

    model: ModelConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    format_version: int = field(default=FORMAT_VERSION, compare=False)  # as read; written: written_version()
    source: str = ""  # where the weights came from (training run, official checkpoint)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "format_version": self.written_version()}

    def written_version(self) -> int:
        """The oldest format whose readers use the folder as it is: 1 for the official model's
        settings; 2 when it needs segment positions, a rounding other than L2 or holds an absorbing
        state; 3 with a length head, exact target regions or DiffuSeq-v2's absorbing state (an
        older reader then refuses it instead of silently sampling another way or failing on
        unknown weights)."""
        if self.model.length_head or self.sequence.regions != "padded" or self.diffusion.absorbing_kind != "replace":
            return 3
        plain = self.model.positions == "absolute" and self.diffusion.rounding == "l2" and not self.model.absorbing_state
        return 1 if plain else 2

    @classmethod
    def from_dict(cls, data: dict) -> "ModelFolderConfig":
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"model folder format {version} is newer than this diffuseq understands ({FORMAT_VERSION}); upgrade diffuseq")
        return cls(
            model=_build(ModelConfig, data["model"]),
            diffusion=_build(DiffusionConfig, data.get("diffusion", {})),
            sequence=_build(SequenceConfig, data.get("sequence", {})),
            decoding=_build(DecodingConfig, data.get("decoding", {})),
            format_version=version,
            source=data.get("source", ""),
        )


def _build(cls, data: dict):
    """Build a dataclass from a dict, ignoring keys a newer writer may have added."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# Sizes only; vocab_size comes from the tokenizer.
PRESETS: dict[str, dict] = {
    "tiny": dict(embed_dim=16, hidden_size=64, num_layers=2, num_heads=4, ffn_size=256, time_embed_dim=32, dropout=0.0),
    "small": dict(embed_dim=64, hidden_size=256, num_layers=4, num_heads=4, ffn_size=1024, time_embed_dim=128, dropout=0.1),
    "base": dict(embed_dim=128, hidden_size=768, num_layers=12, num_heads=12, ffn_size=3072, time_embed_dim=128, dropout=0.1),
}
PRESET_STEPS = {"tiny": 100, "small": 2000, "base": 2000}


def preset(name: str, vocab_size: int, max_positions: int = 128, **overrides) -> ModelConfig:
    """A named model size with the given vocabulary; ``overrides`` change single fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values = dict(PRESETS[name], vocab_size=vocab_size, max_positions=max_positions)
    values.update(overrides)
    return ModelConfig(**values)
