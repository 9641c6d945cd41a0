"""Model cards (the ``README.md`` of a model folder): what the weights are and where they came from."""

from __future__ import annotations

from pathlib import Path


def training_card(cfg, folder_config, step: int, parameters: int, started_from: str | None = None) -> str:
    """``started_from``: what ``--init`` named (a model folder or a BERT, with its source), if anything."""
    m, dcfg, s = folder_config.model, folder_config.diffusion, folder_config.sequence
    shape = f"started from {started_from}" if started_from else f"preset `{cfg.preset}`"
    return f"""---
library_name: diffuseq
tags: [diffuseq, text-diffusion, seq2seq]
---
# DiffuSeq model trained with `diffuseq train`

- Data: `{Path(cfg.data).name}` (check the data's own terms before sharing these weights)
- Recipe: `{cfg.recipe}`, {shape}, {parameters:,} parameters
- Model: {m.num_layers} layers, {m.num_heads} heads, hidden {m.hidden_size}, d = {m.embed_dim}, vocabulary {m.vocab_size}, `{m.positions}` positions, dropout {m.dropout}
- Diffusion: T = {dcfg.steps}, `{dcfg.schedule}` schedule, `{dcfg.rounding}` rounding; sequence length {s.seq_len}
- Training: step {step} of {cfg.steps}, global batch {cfg.batch_size}, lr {cfg.lr}, warmup {cfg.warmup}, EMA {cfg.ema}, token loss {cfg.token_loss}, absorbing {cfg.absorbing}

Use it with `diffuseq generate --model PATH_TO_THIS_FOLDER`.
"""


def converted_card(checkpoint: str, folder_config) -> str:
    m, dcfg = folder_config.model, folder_config.diffusion
    return f"""---
library_name: diffuseq
tags: [diffuseq, text-diffusion, seq2seq]
---
# DiffuSeq model converted from an official checkpoint

- Source: `{checkpoint}` (official DiffuSeq format, converted by `diffuseq convert`)
- Model: {m.num_layers} layers, {m.num_heads} heads, hidden {m.hidden_size}, d = {m.embed_dim}, vocabulary {m.vocab_size}
- Diffusion: T = {dcfg.steps}, `{dcfg.schedule}` schedule; sequence length {folder_config.sequence.seq_len}
- The tied embedding is the checkpoint's `lm_head.weight`, as the official loader uses it.
"""
