"""The model a run trains: its configuration (a preset's sizes, or the ``--init`` model's) and starting weights.

``build_model_config`` turns the run's settings into a ``ModelConfig``; with ``--init`` the
starting model (a diffuseq model folder or a BERT, ``modelfiles/init_model.py``) fixes the sizes,
and ``start_weights`` gives a freshly built model its weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import PRESETS, ModelConfig, preset
from ..errors import FieldError, UsageError, literal
from ..modelfiles.hub import locate
from ..modelfiles.init_model import InitModel, open_init
from .config import TrainConfig


def build_model_config(cfg: TrainConfig, vocab_size: int, start: InitModel | None = None) -> ModelConfig:
    """The preset's sizes, with ``--config`` fields, then ``--embed-dim``, ``--self-condition``, ``--positions``, ``--dropout``, ``--absorbing``.

    With ``--init MODEL`` (``start``: that model, opened if not given): the starting model's
    sizes instead of the preset's (see ``_from_start``).
    """
    # What the recipe decides, whatever the starting shape: the absorbing-state vector exists exactly
    # when training uses it, and exact regions need their size predicted.
    wanted = {"absorbing_state": cfg.absorbing > 0, "length_head": cfg.regions == "exact"}
    if cfg.init:
        return _from_start(cfg, vocab_size, start or starting_model(cfg), wanted)
    overrides = _asked_sizes(cfg)
    overrides.setdefault("self_condition", cfg.self_condition)
    overrides.setdefault("positions", cfg.positions)
    overrides.update(wanted)
    if cfg.dropout is not None:  # a --config file's dropout wins here
        overrides.setdefault("dropout", cfg.dropout)
    max_positions = overrides.pop("max_positions", max(cfg.seq_len, 8))
    if max_positions < cfg.seq_len:
        raise FieldError(f"max_positions {max_positions} (from {{model_overrides}}) is below {{seq_len}} {cfg.seq_len}")
    try:
        return preset(cfg.preset, vocab_size, max_positions=max_positions, **overrides)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid model configuration: {exc}") from None


def _asked_sizes(cfg: TrainConfig) -> dict:
    """The model fields the run asks for explicitly: ``--config``'s, then ``--embed-dim``."""
    asked = {k: v for k, v in cfg.model_overrides.items() if k not in ("train", "vocab_size")}
    if cfg.embed_dim:
        asked.setdefault("embed_dim", cfg.embed_dim)
    return asked


def _from_start(cfg: TrainConfig, vocab_size: int, start: InitModel, wanted: dict) -> ModelConfig:
    """The starting model's sizes (``start.fixed``), with what the run may choose anew.

    A model folder's weights fix every field but the dropout (the absorbing state and length
    head are ``wanted``'s). A BERT fixes its sizes, vocabulary and d = its hidden size (its word
    embeddings are the model's, as with the official ``--use_plm_init bert``); the timestep width,
    positions and self-conditioning follow the run. An explicit ``--preset``, ``--embed-dim`` or
    ``--config`` field that contradicts a fixed size is an error, not silently dropped.
    """
    base, name = start.config, literal(cfg.init)
    if base.vocab_size != vocab_size:
        raise FieldError(f"{{init}} {name} has a vocabulary of {base.vocab_size}, the tokenizer {vocab_size}; "
                         "leave out {tokenizer} to use the model's own")
    if base.max_positions < cfg.seq_len:
        raise FieldError(f"{{init}} {name} has {base.max_positions} positions, fewer than {{seq_len}} {cfg.seq_len}; "
                         "lower {seq_len}")
    why = ("as the official --use_plm_init bert, the word embeddings are BERT's, so d is its hidden size"
           if start.kind == "bert" else "its weights have these sizes")
    fixed = {k: getattr(base, k) for k in start.fixed}
    if cfg.preset is not None:  # a BERT's never match: a preset's d is not its hidden size
        other = [f"{k} {v} against {fixed[k]}" for k, v in PRESETS[cfg.preset].items() if k in fixed and v != fixed[k]]
        if other:
            raise FieldError(f"{{preset}} {cfg.preset} contradicts {{init}} {name} ({', '.join(other)}), whose sizes "
                             f"the model takes ({why}); leave out {{preset}}")
    asked = _asked_sizes(cfg)
    for field, value in asked.items():
        if field in fixed and value != fixed[field]:
            flag = "{model_overrides}" if field in cfg.model_overrides else "{embed_dim}"
            raise FieldError(f"{flag} asks for {field} {value}, but {{init}} {name} has {field} {fixed[field]} ({why}); "
                             "leave it out")
    free = {k: v for k, v in asked.items() if k not in fixed}
    if start.kind == "bert":
        free.setdefault("self_condition", cfg.self_condition)
        free.setdefault("positions", cfg.positions)
    if cfg.dropout is not None:  # a --config file's dropout wins here too
        free.setdefault("dropout", cfg.dropout)
    try:
        return dataclasses.replace(base, **{**free, **wanted})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid model configuration: {exc}") from None


def starting_model(cfg: TrainConfig) -> InitModel:
    """``--init``'s model, opened from where ``prepare_run`` found it (without the network)."""
    source = cfg.init_source or f"local:{Path(cfg.init).expanduser().resolve()}"
    try:
        return open_init(locate(source), source)
    except UsageError as exc:
        raise FieldError(f"{{init}} {literal(cfg.init)}: {literal(exc)}") from None


def start_weights(cfg: TrainConfig, start: InitModel, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The starting model's weights for ``model``; a misfit names ``--init``."""
    try:
        return start.initial_weights(model)
    except UsageError as exc:
        raise FieldError(f"{{init}} {literal(cfg.init)}: {literal(exc)}") from None
