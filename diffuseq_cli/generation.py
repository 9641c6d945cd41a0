"""Sampling candidates for source texts: sizing, per-candidate noise, batches of equal length.

Cost follows the work: a line's sequence is its source part plus a target region sized
from the model's training length statistics (``length="auto"``), not always the full
``seq_len`` (``length="full"``, the official behaviour). Lines are batched only with
lines of the same total length, so a line's computation never depends on its batch.
Candidate k of line i draws all its noise from a generator seeded by (seed, i, k) only:
the same seed gives the same output for any batch size or batch order.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import LoadedModel
from .data import truncate_pair
from .diffusion import Diffusion
from .sampling import make_sampler, sample_loop, step_schedule

MIN_TARGET = 8
LENGTHS = ("auto", "full")


@dataclass(frozen=True)
class SamplingOptions:
    steps: int | None = None  # None: all of the model's T
    sampler: str = "ddim"  # ddim over the visited steps, or ddpm (ancestral)
    eta: float = 0.0
    seed: int = 0
    length: str = "auto"
    multiple: int = 8  # round sequence lengths up to this, so more lines share a batch


@dataclass
class Job:
    """One source line, prepared: its packed source ids and the total sequence length."""

    line: int  # index in the input (part of every candidate's seed)
    src: list[int]  # [CLS] x [SEP] [SEP]
    length: int  # total positions (source + target region)
    truncated: bool


def candidate_seed(seed: int, line: int, k: int) -> int:
    """A 63-bit seed from (seed, line, candidate) alone."""
    hi, lo = (int(v) for v in np.random.SeedSequence([seed & 0xFFFFFFFF, line, k]).generate_state(2, dtype=np.uint32))
    return (hi << 31) ^ lo


def target_length(n_src: int, seq, mode: str, multiple: int = 8) -> int:
    """Target positions for a source part of ``n_src`` positions (see module docstring)."""
    room = seq.seq_len - n_src
    if mode == "full" or not seq.target_len_p99:
        return room
    want = max(MIN_TARGET, math.ceil(seq.target_ratio_p99 * n_src) if seq.target_ratio_p99 else seq.target_len_p99)
    want = min(want, seq.target_len_p99 + 2)
    total = -(-(n_src + want) // multiple) * multiple
    return max(1, min(room, total - n_src))


def prepare(loaded: LoadedModel, texts: list[str], first_line: int, opts: SamplingOptions) -> list[Job]:
    """Tokenize and size source lines; over-long sources are truncated (flagged in ``Job.truncated``)."""
    seq = loaded.config.sequence
    tok = loaded.tokenizer
    jobs = []
    for i, ids in enumerate(tok.encode(texts)):
        budget = seq.seq_len - 3 - MIN_TARGET
        x, _, cut = truncate_pair(ids, [], budget) if len(ids) > budget else (ids, [], False)
        src = [seq.cls_id, *x, seq.sep_id, seq.sep_id]
        jobs.append(Job(first_line + i, src, len(src) + target_length(len(src), seq, opts.length, opts.multiple), cut))
    return jobs


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.inference_mode()
def sample_jobs(
    loaded: LoadedModel, diffusion: Diffusion, jobs: list[Job], ks: list[int], opts: SamplingOptions,
    device: torch.device, precision: str = "fp32",
) -> list[list[int]]:
    """Sample candidate ``ks[j]`` of ``jobs[j]`` (all of one length); returns target token ids per row."""
    L = jobs[0].length
    if any(j.length != L for j in jobs):
        raise ValueError("sample_jobs needs jobs of one length")
    model = loaded.model
    d = model.config.embed_dim
    B = len(jobs)
    ids = torch.full((B, L), loaded.config.sequence.pad_id, dtype=torch.long)
    mask = torch.ones((B, L), dtype=torch.bool)
    gens = []
    for row, (job, k) in enumerate(zip(jobs, ks)):
        ids[row, : len(job.src)] = torch.tensor(job.src)
        mask[row, : len(job.src)] = False
        gens.append(torch.Generator().manual_seed(candidate_seed(opts.seed, job.line, k)))
    z_T = torch.stack([torch.randn((L, d), generator=g) for g in gens]).to(device)

    def noise_fn(i, like):
        return torch.stack([torch.randn((L, d), generator=g) for g in gens]).to(like.device, like.dtype)

    ids, mask = ids.to(device), mask.to(device)
    steps = step_schedule(opts.steps or diffusion.num_steps, diffusion.num_steps)
    with _autocast(precision, device):
        src_emb = model.embed(ids)
        out = sample_loop(model, diffusion, z_T.to(src_emb.dtype), src_emb, mask, steps, make_sampler(opts.sampler, opts.eta), noise_fn)
    tokens = out.tokens.cpu().tolist()
    return [row[len(job.src):] for row, job in zip(tokens, jobs)]


def generate_texts(
    loaded: LoadedModel, sources: list[str], num_samples: int = 1, opts: SamplingOptions = SamplingOptions(),
    batch_size: int = 64, device: str | torch.device = "cpu", precision: str = "fp32",
) -> list[list[str]]:
    """Library entry: ``num_samples`` candidates for each source (in order). Not streaming."""
    device = torch.device(device)
    diffusion = Diffusion(loaded.config.diffusion)
    jobs = prepare(loaded, sources, 0, opts)
    out: list[list[str | None]] = [[None] * num_samples for _ in sources]
    work = sorted(((j.length, j.line, k) for j in jobs for k in range(num_samples)))
    by_line = {j.line: j for j in jobs}
    start = 0
    while start < len(work):
        L = work[start][0]
        end = start
        while end < len(work) and work[end][0] == L and end - start < batch_size:
            end += 1
        chunk = work[start:end]
        rows = sample_jobs(loaded, diffusion, [by_line[w[1]] for w in chunk], [w[2] for w in chunk], opts, device, precision)
        for (_, line, k), text in zip(chunk, loaded.tokenizer.decode(rows)):
            out[line][k] = text
        start = end
    return out  # type: ignore[return-value]
