"""Sampling candidates for source texts: sizing, per-candidate noise, batches of equal length.

Cost follows the work: a line's sequence is its source part plus a target region sized
from the model's training length statistics (``length="auto"``), not always the full
``seq_len`` (``length="full"``, the official behaviour). Lines are batched only with
lines of the same total length, so padding never enters a line's computation.

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
from dataclasses import dataclass

import torch

from .checkpoint import LoadedModel
from .config import ROUNDINGS
from .data import truncate_pair
from .diffusion import Diffusion
from .precision import autocast
from .sampling import (
    REMASK_SCHEDULES, Remasking, SampleOutput, make_sampler, sample_loop, start_from_noise, step_schedule,
)
from .seeds import derived_seed

MIN_TARGET = 8
LENGTHS = ("auto", "full", "predict")
ROW_MULTIPLE = 8  # B·L is padded up to a multiple of this (see the module docstring)


DEFAULT_DDIM_STEPS = 20  # what `generate`, the Python API and the training probe sample with, unless told


@dataclass(frozen=True)
class SamplingOptions:
    steps: int | None = None  # None: DEFAULT_DDIM_STEPS with ddim, all of the model's T with ddpm (``sampling_steps``)
    sampler: str = "ddim"  # ddim over the visited steps, or ddpm (ancestral)
    eta: float = 0.0
    seed: int = 0
    # How the target region is sized: "predict" (the model's length head; exactly the predicted
    # length), "auto" (from the training length statistics, padded), "full" (seq_len, official).
    # None: predict for models with a length head, else auto.
    length: str | None = None
    lengths: int | None = None  # with "predict": the length beam; None: the model's (config.json "decoding")
    multiple: int = 8  # round sequence lengths up to this, so more lines share a batch (auto)
    rounding: str | None = None  # l2 | logits | soft | none; None: the model's own (config.json "diffusion")
    # 1: start from pure noise (the paper). Below 1: start from the source copied into the target
    # part, noised to timestep strength·(T-1), and denoise from there (SDEdit, Meng et al. 2022):
    # outputs stay closer to the source as the strength falls.
    strength: float = 1.0
    # Put the least confident words back in the absorbing state at each step, in the share the
    # model was trained with (mask-predict). None: when the model was trained with ``--absorbing``.
    remask: bool | None = None
    remask_schedule: str = "trained"  # sampling.Remasking: the training share, or mask-predict's linear decay
    # Also re-mask a word equal to the one before it. None: on for models trained with exact
    # regions or DiffuSeq-v2's state (format 3), off for older ones, which decode as before.
    remask_repeats: bool | None = None
    # Collapse runs of the same word in the decoded text ("so so so big" -> "so big"): the usual
    # post-processing of non-autoregressive outputs (Gu et al. 2018). None: the model's
    # (config.json "decoding"; off for older folders: the paper's decoding).
    dedup: bool | None = None

    def __post_init__(self):
        if self.length not in (None, *LENGTHS):
            raise ValueError(f"length must be one of {', '.join(LENGTHS)}, got {self.length!r}")
        if self.lengths is not None and self.lengths < 1:
            raise ValueError(f"lengths must be positive, got {self.lengths}")
        if self.remask_schedule not in REMASK_SCHEDULES:
            raise ValueError(f"remask schedule must be one of {', '.join(REMASK_SCHEDULES)}, got {self.remask_schedule!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.rounding not in (None, *ROUNDINGS):
            raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")
        if self.multiple < 1:
            raise ValueError("multiple must be positive")


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


def length_mode(config, asked: str | None) -> str:
    """The region sizing used: ``asked``, or predict for models with a length head, else auto."""
    has_head = config.model.length_head
    if asked == "predict" and not has_head:
        raise ValueError("--length predict needs a model trained with a length head (train --regions exact)")
    return asked or ("predict" if has_head else "auto")


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


def prepare(loaded: LoadedModel, texts: list[str], first_line: int, opts: SamplingOptions,
            target_words: list[int] | None = None) -> list[Job]:
    """Tokenize and size source lines; over-long sources are truncated (flagged in ``Job.truncated``).

    ``target_words``: a given target word count per line (the region is then exactly that long;
    for measuring what a perfect length predictor would give), instead of ``opts.length``.
    """
    seq = loaded.config.sequence
    budget = max(1, seq.seq_len - 3 - MIN_TARGET)  # [CLS] x [SEP] [SEP], then at least MIN_TARGET target positions
    mode = length_mode(loaded.config, opts.length)
    packed = []
    for ids in loaded.tokenizer.encode(texts):
        x, _, cut = truncate_pair(ids, [], budget)
        packed.append(([seq.cls_id, *x, seq.sep_id, seq.sep_id], cut))
    if target_words is not None:
        beams = [[w] for w in target_words]
    elif mode == "predict" and packed:
        beams = predicted_lengths(loaded, [src for src, _ in packed], opts.lengths or loaded.config.decoding.lengths)
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


def padded_rows(rows: int, length: int) -> int:
    """The fewest rows >= ``rows`` whose product with ``length`` is a multiple of ROW_MULTIPLE."""
    step = ROW_MULTIPLE // math.gcd(length, ROW_MULTIPLE)
    return -(-rows // step) * step


@torch.inference_mode()
def sample_batch(
    loaded: LoadedModel, diffusion: Diffusion, jobs: list[Job], ks: list[int], opts: SamplingOptions,
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

    sampler = make_sampler(opts.sampler, opts.eta)
    noise_fn = (lambda i, like: draw().to(like.device, like.dtype)) if sampler.needs_noise else None
    z_T = draw().to(device)
    ids, mask = ids.to(device), mask.to(device)
    T = diffusion.num_steps
    steps = visited_steps(opts, T)
    start = steps[0]
    with autocast(precision, device):
        src_emb = model.embed(ids)
        if start < T - 1:
            copied = source_copied_into_target(ids, mask, loaded.config.sequence.pad_id)
            t0 = torch.full((R,), start, dtype=torch.long, device=device)
            centre = diffusion.absorbing_centre(model)
            centre = 0.0 if centre is None else centre.to(src_emb.dtype)  # DiffuSeq-v2 models: the process of z - m
            z_start = centre + diffusion.q_sample(model.embed(copied) - centre, t0, z_T.to(src_emb.dtype), mask)
        else:
            z_start = start_from_noise(model, diffusion, z_T.to(src_emb.dtype), start)
        rounding = opts.rounding or diffusion.config.rounding
        share = remask_share(loaded.config, opts.remask)
        remask = Remasking(share, opts.remask_schedule, repeats_default(loaded.config, opts.remask_repeats)) if share > 0 else 0.0
        out = sample_loop(model, diffusion, z_start.to(src_emb.dtype), src_emb, mask, steps, sampler, noise_fn, rounding, remask)
    return SampleOutput(sample=out.sample[:B], tokens=out.tokens[:B])


def collapse_repeats(text: str) -> str:
    """The text with each run of the same whitespace-separated word kept once."""
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


def decode_rows(loaded, rows, opts: SamplingOptions) -> list[str]:
    """Generated id rows -> target texts (up to the target's end), repeats collapsed if asked."""
    texts = loaded.tokenizer.decode(rows, until_end=True)
    dedup = loaded.config.decoding.dedup if opts.dedup is None else opts.dedup
    return [collapse_repeats(t) for t in texts] if dedup else texts


def remask_share(config, asked: bool | None = None) -> float:
    """The share re-masked at sampling: the model's training share when asked (None: when it has
    one), 0 when not; asking a model without an absorbing state is an error."""
    has = config.model.absorbing_state and config.diffusion.absorbing > 0
    if asked and not has:
        raise ValueError("--remask needs a model trained with --absorbing (this one has no absorbing state)")
    return config.diffusion.absorbing if has and asked is not False else 0.0


def sampling_steps(opts: SamplingOptions, T: int) -> int:
    """The number of steps asked for: ``opts.steps``, else DEFAULT_DDIM_STEPS with ddim and T with ddpm."""
    if opts.steps is not None:
        return opts.steps
    return min(DEFAULT_DDIM_STEPS, T) if opts.sampler == "ddim" else T


def repeats_default(config, asked: bool | None) -> bool:
    """``remask_repeats``: as asked, else on for models of the exact-region / DiffuSeq-v2 recipe."""
    if asked is not None:
        return asked
    return config.sequence.regions == "exact" or config.diffusion.absorbing_kind == "v2"


def visited_steps(opts: SamplingOptions, T: int) -> list[int]:
    """The timesteps a sample visits: ``sampling_steps`` from strength·(T-1) down to 0, at most all of them."""
    start = round(opts.strength * (T - 1))
    return step_schedule(min(sampling_steps(opts, T), start + 1), T, start)


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
    loaded: LoadedModel, diffusion: Diffusion, jobs: list[Job], ks: list[int], opts: SamplingOptions,
    device: torch.device, precision: str = "fp32",
) -> list[list[int]]:
    """:func:`sample_batch`, returning each row's target token ids (everything after the source part)."""
    tokens = sample_batch(loaded, diffusion, jobs, ks, opts, device, precision).tokens.cpu().tolist()
    return [row[len(job.src):] for row, job in zip(tokens, jobs)]


def model_device(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device


def generate_texts(
    loaded: LoadedModel, sources: list[str], num_samples: int = 1, opts: SamplingOptions = SamplingOptions(),
    batch_size: int = 64, device: str | torch.device | None = None, precision: str = "fp32",
    target_words: list[int] | None = None, first_line: int = 0,
) -> list[list[str]]:
    """Library entry: ``num_samples`` candidates for each source (in order). Not streaming.

    ``device``: where to run (default: where the model's weights are; the model must be there).
    ``target_words``: see ``prepare``. ``first_line``: the input line number of ``sources[0]``
    (candidate seeds count input lines: a file cut in parts gives the output of the whole).
    """
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
        while end < len(work) and work[end][0] == L and end - start < batch_size:
            end += 1
        chunk = work[start:end]
        rows = sample_jobs(loaded, diffusion, [by_line[w[1]] for w in chunk], [w[2] for w in chunk], opts, device, precision)
        for (_, line, k), text in zip(chunk, decode_rows(loaded, rows, opts)):
            out[line - first_line][k] = text
        start = end
    return out  # type: ignore[return-value]
