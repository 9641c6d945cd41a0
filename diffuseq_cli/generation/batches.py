"""Sampling prepared lines in batches of equal length, and decoding the results.

Lines are batched only with lines of the same total length, so padding never enters a
line's computation.

Reproducibility (docs/generate.md, "Same seed, same output"): candidate k of line i draws
all its noise from a generator seeded by (seed, i, k) only, and a row's arithmetic does
not depend on the batch around it. Two things make the second hold on CPU:

* every row of a sampling batch has the same timestep, so the time MLP runs on one row
  and ``forward`` broadcasts it. Run on B rows, a matrix product of 1-11 rows takes
  BLAS code paths whose rounding differs from the paths of larger products (measured
  with MKL: B = 1-3 with one thread, also 5-7 and 9-11 with two), which made a row's
  z_0 estimate depend on its batch size in the last bits;
* every other matrix product has B·L rows; batches whose B·L is not a multiple of 8
  are padded with throw-away rows (no cost when L is a multiple of 8, as ``auto`` makes it).
"""

from __future__ import annotations

import math

import torch

from ..core.diffusion import Diffusion
from ..core.remasking import Remasking
from ..core.rounding import ROW_MULTIPLE  # B·L is padded up to a multiple of this (see the module docstring)
from ..core.samplers import make_sampler
from ..core.sampling import SampleOutput, sample_loop, start_from_noise
from ..modelfiles.folder import LoadedModel
from ..precision import autocast
from .config import SamplingConfig
from .jobs import Job, candidate_seed, model_device, prepare



def padded_rows(rows: int, length: int) -> int:
    """The fewest rows >= ``rows`` whose product with ``length`` is a multiple of ROW_MULTIPLE."""
    step = ROW_MULTIPLE // math.gcd(length, ROW_MULTIPLE)
    return -(-rows // step) * step


@torch.inference_mode()
def sample_batch(
    loaded: LoadedModel, diffusion: Diffusion, jobs: list[Job], ks: list[int], opts: SamplingConfig,
    device: torch.device, precision: str = "fp32",
) -> SampleOutput:
    """Sample candidate ``ks[j]`` of ``jobs[j]`` (all of one length L): ``sample`` (B, L, d), ``tokens`` (B, L).

    Row j's result depends only on the model, ``jobs[j]``, ``ks[j]`` and ``opts``.
    """
    L = jobs[0].length_of(ks[0])
    if any(j.length_of(k) != L for j, k in zip(jobs, ks)):
        raise ValueError("sample_batch needs candidates of one length")
    model = loaded.model
    d = model.config.embed_dim
    B = len(jobs)
    R = padded_rows(B, L)  # rows R > B are throw-away copies of row 0
    ids = torch.full((R, L), loaded.config.sequence.pad_id, dtype=torch.long)
    mask = torch.ones((R, L), dtype=torch.bool)
    gens = []
    for row, (job, k) in enumerate(zip(jobs, ks)):
        ids[row, : len(job.src)] = torch.tensor(job.src)
        mask[row, : len(job.src)] = False
        gens.append(torch.Generator().manual_seed(candidate_seed(opts.seed, job.line, k)))
    ids[B:], mask[B:] = ids[0], mask[0]
    pad = torch.zeros((R - B, L, d))

    def draw() -> torch.Tensor:  # (R, L, d): each real row from its own generator
        return torch.cat([torch.stack([torch.randn((L, d), generator=g) for g in gens]), pad])

    sampler = make_sampler(opts.sampler_for(loaded.config), opts.eta)
    noise_fn = (lambda i, like: draw().to(like.device, like.dtype)) if sampler.needs_noise else None
    z_T = draw().to(device)
    ids, mask = ids.to(device), mask.to(device)
    T = diffusion.num_steps
    steps = opts.visited_steps(loaded.config)
    start = steps[0]
    with autocast(precision, device):
        src_emb = model.embed(ids)
        if start < T - 1:
            copied = source_copied_into_target(ids, mask, loaded.config.sequence.pad_id)
            t0 = torch.full((R,), start, dtype=torch.long, device=device)
            z_start = diffusion.q_sample(model.embed(copied), t0, z_T.to(src_emb.dtype), mask, diffusion.absorbing_centre(model))
        else:
            z_start = start_from_noise(model, diffusion, z_T.to(src_emb.dtype), start)
        rounding = opts.rounding_for(loaded.config)
        share = opts.remask_share_for(loaded.config)
        remask = Remasking(share, opts.remask_schedule, opts.remask_repeats_for(loaded.config)) if share > 0 else 0.0
        out = sample_loop(model, diffusion, z_start.to(src_emb.dtype), src_emb, mask, steps, sampler, noise_fn, rounding, remask)
    return SampleOutput(sample=out.sample[:B], tokens=out.tokens[:B])


def collapse_repeats(text: str) -> str:
    """The text with each run of the same whitespace-separated word kept once."""
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


def decode_rows(loaded, rows, opts: SamplingConfig) -> list[str]:
    """Generated id rows -> target texts (up to the target's end), repeats collapsed if asked."""
    texts = loaded.tokenizer.decode(rows, until_end=True)
    return [collapse_repeats(t) for t in texts] if opts.dedup_for(loaded.config) else texts


def source_copied_into_target(ids: torch.Tensor, target_mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """ids (B, L) with each row's target part replaced by its source part, aligned from the start.

    ``[CLS] x [SEP] [SEP] | ...`` becomes ``[CLS] x [SEP] [SEP] | [CLS] x [SEP] [PAD]...``: the
    target a copy of the source would have (cut where the target part ends).
    """
    B, L = ids.shape
    idx = torch.arange(L, device=ids.device).expand(B, L)
    n_src = (~target_mask).sum(dim=1, keepdim=True)  # source part: [CLS] x [SEP] [SEP]
    j = idx - n_src  # position within the target part
    take = target_mask & (j < n_src - 1)  # [CLS] x [SEP]: the source part without its last [SEP]
    copied = torch.gather(ids, 1, j.clamp(0, L - 1))
    out = torch.where(take, copied, torch.full_like(ids, pad_id))
    return torch.where(target_mask, out, ids)


def sample_jobs(
    loaded: LoadedModel, diffusion: Diffusion, jobs: list[Job], ks: list[int], opts: SamplingConfig,
    device: torch.device, precision: str = "fp32",
) -> list[list[int]]:
    """:func:`sample_batch`, returning each row's target token ids (everything after the source part)."""
    tokens = sample_batch(loaded, diffusion, jobs, ks, opts, device, precision).tokens.cpu().tolist()
    return [row[len(job.src):] for row, job in zip(tokens, jobs)]


def generate_texts(
    loaded: LoadedModel, sources: list[str], num_samples: int = 1, opts: SamplingConfig = SamplingConfig(),
    device: str | torch.device | None = None, precision: str = "fp32",
    target_words: list[int] | None = None, first_line: int = 0,
) -> list[list[str]]:
    """Library entry: ``num_samples`` candidates for each source (in order). Not streaming.

    ``device``: where to run (default: where the model's weights are; the model must be there).
    ``target_words``: see ``prepare``. ``first_line``: the input line number of ``sources[0]``
    (candidate seeds count input lines: a file cut in parts gives the output of the whole).
    """
    opts.check(loaded.config)
    device = torch.device(device) if device is not None else model_device(loaded)
    diffusion = Diffusion(loaded.config.diffusion)
    jobs = prepare(loaded, sources, first_line, opts, target_words)
    out: list[list[str | None]] = [[None] * num_samples for _ in sources]
    work = sorted(((j.length_of(k), j.line, k) for j in jobs for k in range(num_samples)))
    by_line = {j.line: j for j in jobs}
    start = 0
    while start < len(work):
        L = work[start][0]
        end = start
        while end < len(work) and work[end][0] == L and end - start < opts.batch_size:
            end += 1
        chunk = work[start:end]
        rows = sample_jobs(loaded, diffusion, [by_line[w[1]] for w in chunk], [w[2] for w in chunk], opts, device, precision)
        for (_, line, k), text in zip(chunk, decode_rows(loaded, rows, opts)):
            out[line - first_line][k] = text
        start = end
    return out  # type: ignore[return-value]
