"""The training BLEU probe (``train --eval-every``): sample a fixed validation subset and score it.

Quality against wall time during a run; the final numbers come from ``bench/`` on all lines.
"""

from __future__ import annotations

import itertools

from ..evaluation.report import evaluate
from ..generation.batches import generate_texts
from ..generation.config import SamplingConfig
from ..generation.jobs import model_device
from .data import read_pairs


PROBE_SEED = 0  # the same noise at every evaluation, so that probe values differ by the model alone


def bleu_probe(loaded, path, lines: int, steps: int | None = None) -> dict:
    """BLEU of one sample per line on the first ``lines`` pairs, and of copying the source.

    The model's own sampler (config.json "decoding"; ddim unless set). ``steps``: its steps (at
    most the model's T); None: ``generate``'s default.
    """
    pairs = list(itertools.islice(read_pairs(path), lines))
    srcs = [s for s, _, _ in pairs]
    refs = [t for _, t, _ in pairs]
    opts = SamplingConfig(steps=None if steps is None else min(steps, loaded.config.diffusion.steps), seed=PROBE_SEED)
    hyps = [c[0] for c in generate_texts(loaded, srcs, 1, opts, device=model_device(loaded))]
    report = evaluate([hyps], refs, sources=srcs)  # the same scoring as `diffuseq evaluate --sources`
    return {
        "valid_bleu": round(report.files[0].bleu, 5),
        "copy_source_bleu": round(report.source.bleu, 5),
        "copy_share": round(report.files[0].copy, 4),
        "sample": hyps[0] if hyps else "",
    }
