"""A pretrained BERT as the start of training: what the official ``--use_plm_init bert`` does.

The official model then takes from BERT its encoder layers, its word embeddings (the output
head is tied to them), its position embeddings and its embedding LayerNorm, and BERT's
vocabulary; the timestep MLP and the output bias start fresh. The embedding dimension d is
BERT's hidden size, so the model has no up/down projections. Which official tensor comes from
which BERT tensor is pinned by ``fixtures/official-plm-tiny/expected.json``: we name BERT's
tensors as the official checkpoint does, then take our names from the converter (``official.py``).

A BERT folder is what ``save_pretrained`` writes: ``config.json`` (``model_type`` bert), weights
as ``model.safetensors`` (or ``pytorch_model.bin``, read with ``weights_only=True``), and the
tokenizer as ``tokenizer.json`` or ``vocab.txt``. Errors are ``UsageError``s about the folder;
the caller says which option named it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UsageError
from .official import our_name
from .tokenizer import TextTokenizer, load_tokenizer

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# The sizes a BERT fixes (ModelConfig fields); the rest (timestep width, positions kind,
# self-conditioning, dropout) are the run's to choose.
FIXED = ("vocab_size", "embed_dim", "hidden_size", "num_layers", "num_heads", "ffn_size", "max_positions", "layer_norm_eps")
# Each layer's tensors, by their BERT names (the official checkpoint's too).
_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm")


def is_hugging_face_config(data: dict) -> bool:
    """A Hugging Face ``config.json``, of BERT or another model type (a diffuseq one holds a ``model`` object instead)."""
    return "model_type" in data and not isinstance(data.get("model"), dict)


@dataclass(frozen=True)
class BertFolder:
    path: Path
    config: ModelConfig  # BERT's sizes, d = hidden, BERT's dropout; other fields at their defaults
    weights: Path
    state: dict[str, torch.Tensor]  # the tensors the official init copies, under our names, float32
    tokenizer: Path
    lowercase: bool  # for a vocab.txt: the tokenizer config's do_lower_case (bert-base-uncased: yes)


def read_bert(folder: str | Path) -> BertFolder:
    """Read a BERT folder: ``config.json`` checked, the weights loaded and checked against it, the tokenizer found."""
    folder = Path(folder)
    data = _read_json(folder / "config.json")
    kind = data.get("model_type")
    if kind != "bert":
        raise UsageError(f"config.json is a {kind!r} model, not BERT (model_type 'bert')")
    act = data.get("hidden_act", "gelu")
    if act != "gelu":
        raise UsageError(f"hidden_act {act!r}: the model's layers use exact GELU ('gelu'), as BERT's")
    if data.get("position_embedding_type", "absolute") != "absolute":
        raise UsageError(f"position_embedding_type {data['position_embedding_type']!r}: only absolute positions are supported")
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise UsageError(f"no weights: expected {' or '.join(WEIGHT_FILES)}")
    tokenizer = next((folder / n for n in TOKENIZER_FILES if (folder / n).is_file()), None)
    if tokenizer is None:
        raise UsageError(f"no tokenizer: expected {' or '.join(TOKENIZER_FILES)}")
    lowercase = True
    if (folder / "tokenizer_config.json").is_file():
        lowercase = bool(_read_json(folder / "tokenizer_config.json").get("do_lower_case", True))
    try:
        hidden = int(data["hidden_size"])
        config = ModelConfig(
            vocab_size=int(data["vocab_size"]), embed_dim=hidden, hidden_size=hidden,
            num_layers=int(data["num_hidden_layers"]), num_heads=int(data["num_attention_heads"]),
            ffn_size=int(data["intermediate_size"]), max_positions=int(data["max_position_embeddings"]),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)), dropout=float(data.get("hidden_dropout_prob", 0.1)),
        )
    except KeyError as exc:
        raise UsageError(f"config.json lacks {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"config.json: {exc}") from None
    return BertFolder(folder, config, weights, _copied_tensors(weights, config), tokenizer, lowercase)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path.name}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path.name} is not a JSON object")
    return data


def bert_tokenizer(bert: BertFolder) -> TextTokenizer:
    """BERT's own tokenizer; its size must be the number of word embeddings."""
    tok = load_tokenizer(bert.tokenizer, lowercase=bert.lowercase)
    if tok.vocab_size != bert.config.vocab_size:
        raise UsageError(f"{bert.tokenizer.name} holds {tok.vocab_size} tokens, but the model has "
                         f"{bert.config.vocab_size} word embeddings: the vocabulary does not match the weights")
    return tok


def official_name(bert_key: str) -> str | None:
    """The official model's name for a BERT tensor that its init copies, or None (token types, pooler, heads)."""
    if bert_key == "embeddings.word_embeddings.weight":
        return "word_embedding.weight"  # lm_head.weight too: the head is tied to it
    for prefix, official in (("encoder.", "input_transformers."), ("embeddings.position_embeddings.", "position_embeddings."),
                             ("embeddings.LayerNorm.", "LayerNorm.")):
        if bert_key.startswith(prefix):
            return official + bert_key[len(prefix):]
    return None


def _copied_tensors(weights: Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """BERT's tensors that the official init copies, under our names, as float32: all there, each of the
    shape that ``cfg`` (read from config.json) gives it."""
    state = _normalised(_load(weights))
    needed = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    needed += [f"encoder.layer.{i}.{part}.{kind}" for i in range(cfg.num_layers) for part in _LAYER_PARTS
               for kind in ("weight", "bias")]
    missing = [k for k in needed if k not in state]
    if missing:
        raise UsageError(f"{weights.name} lacks {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if any(k.startswith(f"encoder.layer.{cfg.num_layers}.") for k in state):
        raise UsageError(f"{weights.name} holds more layers than config.json's num_hidden_layers {cfg.num_layers}")
    ours = {}
    for key in needed:
        want = _bert_shape(key, cfg)
        if tuple(state[key].shape) != want:
            raise UsageError(f"{weights.name}: {key} has shape {tuple(state[key].shape)}, but config.json's sizes make it {want}")
        official = official_name(key)
        ours[official if official == "word_embedding.weight" else our_name(official)] = state[key].float()
    return ours


def _bert_shape(key: str, cfg: ModelConfig) -> tuple[int, ...]:
    """The shape BERT's layout gives a tensor of a BertModel with ``cfg``'s sizes."""
    H, F = cfg.hidden_size, cfg.ffn_size
    if key == "embeddings.word_embeddings.weight":
        return (cfg.vocab_size, H)
    if key == "embeddings.position_embeddings.weight":
        return (cfg.max_positions, H)
    weight = key.endswith(".weight") and ".LayerNorm." not in key
    if ".intermediate.dense." in key:
        return (F, H) if weight else (F,)
    if key.endswith("output.dense.weight") and ".attention." not in key:
        return (H, F)
    return (H, H) if weight else (H,)


def place_bert(bert: BertFolder, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``own`` (a fresh model's state dict) with BERT's tensors in their places; a shape that differs is an error."""
    placed = {k: v.detach().clone() for k, v in own.items()}
    for name, value in bert.state.items():
        if name not in own or own[name].shape != value.shape:
            want = tuple(own[name].shape) if name in own else "no such tensor"
            raise UsageError(f"{bert.weights.name}: {name} has shape {tuple(value.shape)}, the model wants {want}")
        placed[name] = value
    return placed


def _normalised(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BertModel's names: without the ``bert.`` prefix of pretraining checkpoints, LayerNorm ``gamma``/``beta``
    (older files) as ``weight``/``bias`` (``from_pretrained`` reads them the same way)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        if ".LayerNorm." in key:
            key = key.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(".LayerNorm.beta", ".LayerNorm.bias")
        out[key] = value
    return out


def _load(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise UsageError(f"{path.name}: cannot read weights ({exc})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # never repeat torch's advice to load unsafely
        what = "holds objects other than tensors, which are never unpickled" if "Unsupported global" in str(exc) \
            else "cannot be read as a file of tensors"
        raise UsageError(f"{path.name} {what}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path.name} is not a state dict of tensors")
    return state
