"""Source lines prepared for sampling: packed ids, the target region's size, per-candidate seeds.

Cost follows the work: a line's sequence is its source part plus a target region sized
exactly to the length the model's length head predicts (``length="predict"``), or from its
training length statistics (``"auto"``), not always the full ``seq_len`` (``"full"``, the
official behaviour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.layout import SOURCE_SPECIALS, pack_source, truncate_pair
from ..core.seeds import derived_seed
from ..modelfiles.folder import LoadedModel
from .config import SamplingConfig

MIN_TARGET = 8


@dataclass
class Job:
    """One source line, prepared: its packed source ids and the total sequence length(s).

    ``lengths`` holds one total length (source + target region) per entry of the length beam,
    most likely first: candidate k uses ``lengths[k % len(lengths)]``.
    """

    line: int  # index in the input (part of every candidate's seed)
    src: list[int]  # [CLS] x [SEP] [SEP]
    lengths: tuple[int, ...]
    truncated: bool

    @property
    def length(self) -> int:
        """The first (most likely) total length."""
        return self.lengths[0]

    def length_of(self, k: int) -> int:
        return self.lengths[k % len(self.lengths)]


def candidate_seed(seed: int, line: int, k: int) -> int:
    """A 63-bit seed from (seed mod 2³², line, candidate) alone."""
    return derived_seed(seed, line, k)


def target_length(n_src: int, seq, mode: str, multiple: int = 8) -> int:
    """Target positions for a source part of ``n_src`` positions.

    ``full``: everything up to ``seq_len`` (the official layout). ``auto``: the source's
    length times the 99th-percentile target/source ratio seen in training, at least
    ``MIN_TARGET`` and at most the 99th-percentile target length + 2, with the total rounded
    up to ``multiple``; never past ``seq_len``. Models without length statistics
    (converted official checkpoints) always get ``full``.
    """
    room = seq.seq_len - n_src
    if mode == "full" or not seq.target_len_p99:
        return room
    want = math.ceil(seq.target_ratio_p99 * n_src) if seq.target_ratio_p99 else seq.target_len_p99
    want = min(max(MIN_TARGET, want), seq.target_len_p99 + 2)
    total = -(-(n_src + want) // multiple) * multiple
    return max(1, min(room, total - n_src))


def predicted_lengths(loaded: LoadedModel, sources: list[list[int]], k: int) -> list[list[int]]:
    """The ``k`` most likely target word counts for each packed source, most likely first."""
    model = loaded.model
    device = model_device(loaded)
    S = max(len(s) for s in sources)
    ids = torch.full((len(sources), S), loaded.config.sequence.pad_id, dtype=torch.long)
    mask = torch.zeros((len(sources), S), dtype=torch.bool)
    for row, src in enumerate(sources):
        ids[row, : len(src)] = torch.tensor(src)
        mask[row, : len(src)] = True
    with torch.inference_mode():
        logits = model.length_logits(ids.to(device), mask.to(device)).float().cpu()
        logits[:, 0] = -torch.inf  # at least one word
        return logits.topk(min(k, logits.shape[1] - 1), dim=1).indices.tolist()


def exact_lengths(n_src: int, words: list[int], seq) -> tuple[int, ...]:
    """Total lengths for target regions of exactly ``words`` words ([CLS] y [SEP]), within seq_len, unique, in order."""
    out = []
    for w in words:
        total = min(seq.seq_len, n_src + max(1, w) + 2)
        if total not in out:
            out.append(total)
    return tuple(out)


def prepare(loaded: LoadedModel, texts: list[str], first_line: int, opts: SamplingConfig,
            target_words: list[int] | None = None) -> list[Job]:
    """Tokenize and size source lines; over-long sources are truncated (flagged in ``Job.truncated``).

    ``target_words``: a given target word count per line (the region is then exactly that long;
    for measuring what a perfect length predictor would give), instead of ``opts.length``.
    """
    seq = loaded.config.sequence
    budget = max(1, seq.seq_len - SOURCE_SPECIALS - MIN_TARGET)  # [CLS] x [SEP] [SEP], then at least MIN_TARGET target positions
    mode = opts.length_for(loaded.config)
    packed = []
    for ids in loaded.tokenizer.encode(texts):
        x, _, cut = truncate_pair(ids, [], budget)
        packed.append((pack_source(x, seq.cls_id, seq.sep_id), cut))
    if target_words is not None:
        beams = [[w] for w in target_words]
    elif mode == "predict" and packed:
        beams = predicted_lengths(loaded, [src for src, _ in packed], opts.lengths_for(loaded.config))
    else:
        beams = None
    jobs = []
    for i, (src, cut) in enumerate(packed):
        if beams is not None:
            lengths = exact_lengths(len(src), beams[i], seq)
        else:
            lengths = (len(src) + target_length(len(src), seq, mode, opts.multiple),)
        jobs.append(Job(first_line + i, src, lengths, cut))
    return jobs


def model_device(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device
