"""Tiny model folders for generation tests and benchmarks, built in-process in about a second.

Weights are random, but scaled so that the denoiser's output depends on its input (the
default 0.02 init makes every position round to the same word): candidates differ, MBR has
something to choose, and rounding meets near-ties, which is what invariance tests need.
The tokenizer is a small BPE trained on QQP valid, and the length statistics come from
packing that file, as ``diffuseq train`` records them.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn

from diffuseq_cli.config import DiffusionConfig, ModelFolderConfig, SequenceConfig, preset
from diffuseq_cli.core.model import DiffuSeqTransformer
from diffuseq_cli.modelfiles.folder import is_complete, save_model_folder
from diffuseq_cli.modelfiles.tokenizer import train_bpe
from diffuseq_cli.training.data import length_stats, read_pairs, tokenize_file

from paths import QQP_VALID


@functools.lru_cache(maxsize=4)
def qqp_tokenizer(vocab_size: int = 400):
    texts = [t for s, g, _ in read_pairs(QQP_VALID) for t in (s, g)]
    return train_bpe(texts, vocab_size=vocab_size)


def build_tiny_model(
    folder: Path, *, preset_name: str = "tiny", vocab_size: int = 400, seq_len: int = 48, steps: int = 50,
    seed: int = 0, length_stats_from_data: bool = True, **overrides,
) -> Path:
    """Write a random-weight model folder at ``folder`` (reused if it is already complete); returns it."""
    folder = Path(folder)
    if is_complete(folder):
        return folder
    tok = qqp_tokenizer(vocab_size)
    p99, ratio = length_stats(tokenize_file(QQP_VALID, tok, seq_len)) if length_stats_from_data else (0, 0.0)
    overrides.setdefault("dropout", 0.0)
    cfg = ModelFolderConfig(
        model=preset(preset_name, tok.vocab_size, max_positions=seq_len, **overrides),
        diffusion=DiffusionConfig(steps=steps),
        sequence=SequenceConfig(seq_len=seq_len, pad_id=tok.pad_id, cls_id=tok.cls_id, sep_id=tok.sep_id,
                                target_len_p99=p99, target_ratio_p99=round(ratio, 4)),
        source="tests/helpers_models.py (random weights)",
    )
    torch.manual_seed(seed)
    model = DiffuSeqTransformer(cfg.model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
    save_model_folder(folder, cfg, model.eval(), tok, "# tiny random test model\n")
    return folder


def train_tiny_fast(out: Path, tokenizer_file: str, **settings):
    """A few steps of ``diffuseq train`` (fast recipe, tiny preset, T = 50) on QQP valid; ``settings`` override."""
    from diffuseq_cli.training.config import with_recipe
    from diffuseq_cli.training.run import train

    values = dict(data=str(QQP_VALID), out=str(out), tokenizer=tokenizer_file, preset="tiny", diffusion_steps=50,
                  seq_len=32, batch_size=8, steps=3, warmup=1, save_every=1000, log_every=1)
    return train(with_recipe("fast", **{**values, **settings}))
