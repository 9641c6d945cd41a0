"""Validation BLEU during training: sample a fixed subset and score it (quality against wall time)."""

from __future__ import annotations

import itertools

from .data import read_pairs
from .generation import SamplingOptions, generate_texts
from .metrics import sentence_bleu


def mean_bleu(hyps: list[str], refs: list[str]) -> float:
    return sum(sentence_bleu(h, r) for h, r in zip(hyps, refs)) / max(1, len(hyps))


def bleu_probe(loaded, path, lines: int, steps: int) -> dict:
    """BLEU of one DDIM sample per line on the first ``lines`` pairs, and of copying the source."""
    pairs = list(itertools.islice(read_pairs(path), lines))
    srcs = [s for s, _, _ in pairs]
    refs = [t for _, t, _ in pairs]
    steps = min(steps, loaded.config.diffusion.steps)
    hyps = [c[0] for c in generate_texts(loaded, srcs, 1, SamplingOptions(steps=steps, seed=0), batch_size=64, device=next(loaded.model.parameters()).device)]
    copies = sum(h.strip() == s.strip() for h, s in zip(hyps, srcs))
    return {
        "valid_bleu": round(mean_bleu(hyps, refs), 5),
        "copy_source_bleu": round(mean_bleu(srcs, refs), 5),
        "copy_share": round(copies / max(1, len(hyps)), 4),
        "sample": hyps[0] if hyps else "",
    }
