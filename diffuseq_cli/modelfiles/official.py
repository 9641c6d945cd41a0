"""Import checkpoints of the official DiffuSeq code (DESIGN.md section 4) into our model.

The official state dict uses the Hugging Face BERT names; sizes follow from the
tensor shapes, except the head count, which is not stored (bert-base has 12).
Real official checkpoints hold the EMA value in ``word_embedding.weight`` but the
raw training value in ``lm_head.weight``, and the official loader ends up using
``lm_head.weight`` for the tied table; every official number was made that way,
so we take ``lm_head.weight`` as our tied embedding.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from ..config import DiffusionConfig, ModelConfig, ModelFolderConfig, SequenceConfig
from ..errors import DiffuseqError, UsageError, at_least
from .pt_files import load_tensors
from .tokenizer import TextTokenizer

_LAYER = re.compile(r"input_transformers\.layer\.(\d+)\.(.+)")
_LAYER_KEYS = {
    "attention.self.query": "attn.query",
    "attention.self.key": "attn.key",
    "attention.self.value": "attn.value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "ln_attn",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
    "output.LayerNorm": "ln_ffn",
}
_TOP_KEYS = {
    "time_embed.0": "time_mlp.0",
    "time_embed.2": "time_mlp.2",
    "input_up_proj.0": "up_proj.0",
    "input_up_proj.2": "up_proj.2",
    "output_down_proj.0": "down_proj.0",
    "output_down_proj.2": "down_proj.2",
    "position_embeddings": "position_embedding",
    "LayerNorm": "ln_in",
}


def load_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pt`` state dict safely (``weights_only=True``: no arbitrary unpickling)."""
    try:
        state = load_tensors(path, "not an official DiffuSeq checkpoint")
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(f"checkpoint not found: {path} (expected an official .pt file)") from None
    if not isinstance(state, dict) or "lm_head.weight" not in state:
        raise DiffuseqError(f"{path}: not an official DiffuSeq checkpoint (no lm_head.weight)")
    return state


def our_name(key: str) -> str | None:
    """Our parameter name for an official key; None for the tied table and buffers (handled by the caller)."""
    if key == "position_ids":
        return None
    if key == "lm_head.weight" or key == "word_embedding.weight":
        return None  # handled explicitly (the tied table)
    if key == "lm_head.bias":
        return "lm_head_bias"
    m = _LAYER.fullmatch(key)
    if m:
        idx, rest = m.groups()
        for old, new in _LAYER_KEYS.items():
            if rest.startswith(old + "."):
                return f"blocks.{idx}.{new}{rest[len(old):]}"
        raise DiffuseqError(f"unexpected key in official checkpoint: {key}")
    for old, new in _TOP_KEYS.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    raise DiffuseqError(f"unexpected key in official checkpoint: {key}")


def convert_state(state: dict[str, torch.Tensor], num_heads: int = 12, seq_len: int | None = None) -> tuple[ModelConfig, dict]:
    """Official state dict -> (our ModelConfig, our state dict)."""
    emb = state["lm_head.weight"].float()
    word = state.get("word_embedding.weight")
    if word is not None and not torch.equal(word.float(), emb):
        warnings.warn(
            "word_embedding.weight differs from lm_head.weight; using lm_head.weight for the tied table, as the official loader does",
            stacklevel=2,
        )
    vocab, d = emb.shape
    hidden = state["position_embeddings.weight"].shape[1]
    layers = 1 + max(int(m.group(1)) for k in state if (m := _LAYER.fullmatch(k)))
    if hidden % num_heads:
        raise DiffuseqError(f"hidden size {hidden} of this checkpoint is not divisible by {num_heads} heads; pass the right head count (--heads)")
    cfg = ModelConfig(
        vocab_size=vocab,
        embed_dim=d,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=num_heads,
        ffn_size=state["input_transformers.layer.0.intermediate.dense.weight"].shape[0],
        time_embed_dim=state["time_embed.0.weight"].shape[1],
        max_positions=state["position_embeddings.weight"].shape[0],
        dropout=0.0,
    )
    if state["time_embed.0.weight"].shape[0] != 4 * cfg.time_embed_dim:
        raise DiffuseqError("unexpected timestep MLP width in official checkpoint")
    ours = {"word_embedding.weight": emb}
    for k, v in state.items():
        new = our_name(k)
        if new is not None:
            ours[new] = v.float()
    return cfg, ours


def read_training_args(path: str | Path | None, checkpoint: Path) -> dict:
    """``training_args.json`` given, or found beside the checkpoint; {} when absent."""
    candidate = Path(path) if path else checkpoint.parent / "training_args.json"
    if candidate.exists():
        return json.loads(candidate.read_text())
    if path:
        raise DiffuseqError(f"training args not found: {path}")
    return {}


def official_folder_config(cfg: ModelConfig, args: dict, tokenizer: TextTokenizer, source: str) -> ModelFolderConfig:
    """Diffusion and sequence settings from ``training_args.json`` (official defaults when absent)."""
    if not args.get("predict_xstart", True) or args.get("learn_sigma", False):
        raise DiffuseqError("only official checkpoints trained with predict_xstart=True and learn_sigma=False are supported")
    seq_len = int(args.get("seq_len", min(128, cfg.max_positions)))
    return ModelFolderConfig(
        model=cfg,
        diffusion=DiffusionConfig(
            steps=int(args.get("diffusion_steps", 2000)),
            schedule=args.get("noise_schedule", "sqrt"),
            rescale_timesteps=bool(args.get("rescale_timesteps", True)),
        ),
        sequence=SequenceConfig(seq_len=seq_len, pad_id=tokenizer.pad_id, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id),
        source=source,
    )


def load_official(checkpoint: str | Path, args_path: str | Path | None = None, tokenizer_path: str | Path | None = None, num_heads: int = 12):
    """An official ``.pt`` as a LoadedModel (converted in memory); the tokenizer is looked for beside it."""
    from ..core.model import DiffuSeqTransformer
    from .folder import LoadedModel
    from .tokenizer import load_tokenizer

    at_least("num_heads", num_heads)
    checkpoint = Path(checkpoint)
    state = load_official_state(checkpoint)
    cfg, ours = convert_state(state, num_heads=num_heads)
    args = read_training_args(args_path, checkpoint)
    tok_path = Path(tokenizer_path) if tokenizer_path else _find_tokenizer(checkpoint.parent)
    if tok_path is None:
        raise DiffuseqError(
            f"no tokenizer for {checkpoint}: pass --tokenizer vocab.txt (bert-base-uncased for official checkpoints) or tokenizer.json"
        )
    tokenizer = load_tokenizer(tok_path)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise DiffuseqError(f"tokenizer {tok_path} has {tokenizer.vocab_size} tokens but the checkpoint has {cfg.vocab_size}")
    folder_config = official_folder_config(cfg, args, tokenizer, source=f"official:{checkpoint.name}")
    model = DiffuSeqTransformer(cfg)
    model.load_state_dict(ours)
    return LoadedModel(folder_config, model.eval(), tokenizer, checkpoint)


def _find_tokenizer(folder: Path) -> Path | None:
    for name in ("tokenizer.json", "vocab.txt"):
        if (folder / name).exists():
            return folder / name
    return None
