"""Generation as a library: sizing, seeds, batch invariance down to the bits, streaming order, MBR, formats."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from diffuseq_cli.config import SequenceConfig
from diffuseq_cli.core.diffusion import Diffusion
from diffuseq_cli.evaluation.mbr import MBROutput
from diffuseq_cli.evaluation.rerank import CandidateSet, rerank
from diffuseq_cli.generation import GenerateOptions, LineResult, format_result, generate_stream, lines_done
from diffuseq_cli.generation import SamplingConfig, candidate_seed, generate_texts, prepare, sample_batch, target_length
from diffuseq_cli.generation.batches import padded_rows
from diffuseq_cli.generation.jobs import MIN_TARGET
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.data import read_pairs
from helpers_models import build_tiny_model
from paths import QQP_VALID, require_shared

require_shared(module=True)

SOURCES = [s for s, _, _ in read_pairs(QQP_VALID)][:40]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model_folder(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def tiny_segment(tmp_path_factory):
    """Positions numbered per segment and head-argmax rounding (the fast recipe's model)."""
    folder = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-seg", positions="segment")
    loaded = load_model_folder(folder)
    loaded.config = dataclasses.replace(loaded.config, diffusion=dataclasses.replace(loaded.config.diffusion, rounding="logits"))
    return loaded


@pytest.fixture(scope="module")
def tiny128(tmp_path_factory):
    """The official 128 positions: most of them are padding for QQP questions."""
    return load_model_folder(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny128", seq_len=128))


# --- sizing -----------------------------------------------------------------------------------
def test_target_length_follows_the_length_statistics():
    seq = SequenceConfig(seq_len=128, target_len_p99=30, target_ratio_p99=1.5)
    for n_src in (3, 8, 13, 40, 100, 117):
        auto, full = target_length(n_src, seq, "auto"), target_length(n_src, seq, "full")
        assert full == 128 - n_src
        assert 1 <= auto <= full
        if n_src + MIN_TARGET <= 128:
            assert auto >= MIN_TARGET
        if auto < full:
            assert (n_src + auto) % 8 == 0  # totals rounded up so that lines share batches
            assert auto <= 30 + 2 + 7  # never much past the p99 target length
    assert target_length(10, seq, "auto") == 32 - 10  # 1.5 * 10 = 15 target positions: total 25, rounded up to 32
    assert target_length(40, seq, "auto") == 72 - 40  # capped at p99 + 2 = 32, total rounded up to 72
    assert target_length(3, seq, "auto") == 16 - 3  # at least MIN_TARGET
    no_stats = SequenceConfig(seq_len=128)  # a converted official model
    assert target_length(10, no_stats, "auto") == 118


def test_auto_length_is_shorter_than_full_and_long_sources_are_truncated(tiny128):
    auto = prepare(tiny128, SOURCES, 0, SamplingConfig(length="auto"))
    full = prepare(tiny128, SOURCES, 0, SamplingConfig(length="full"))
    seq_len = tiny128.config.sequence.seq_len
    assert all(j.length == seq_len for j in full)
    assert sum(j.length for j in auto) < 0.65 * sum(j.length for j in full)
    assert all(len(j.src) + MIN_TARGET <= j.length <= seq_len and j.length % 8 == 0 for j in auto)
    long = prepare(tiny128, ["word " * 200], 7, SamplingConfig())[0]
    assert long.truncated and long.line == 7 and long.length == seq_len
    assert len(long.src) == seq_len - MIN_TARGET


def test_candidate_seed_depends_on_seed_line_and_candidate_only():
    seeds = {candidate_seed(s, i, k) for s in (0, 1) for i in range(50) for k in range(10)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)


def test_padded_rows():
    assert padded_rows(1, 48) == 1 and padded_rows(3, 40) == 3
    assert padded_rows(1, 50) == 4 and padded_rows(5, 50) == 8  # 50 = 2 * 25: rows padded to a multiple of 4
    assert padded_rows(1, 25) == 8 and padded_rows(9, 25) == 16
    assert all(padded_rows(b, L) * L % 8 == 0 and padded_rows(b, L) - b < 8 for b in range(1, 20) for L in range(8, 60))


# --- the same seed gives the same output ------------------------------------------------------------
def _z0_per_row(loaded, work, opts, order, size):
    """Run ``work`` [(job, k)] in batches of ``size`` taken in ``order``; every z_0 estimate of every row."""
    diffusion = Diffusion(loaded.config.diffusion)
    seen = []
    hook = loaded.model.register_forward_hook(lambda mod, args, out: seen.append(out.detach().clone()))
    rows = {}
    try:
        for start in range(0, len(order), size):
            part = order[start:start + size]
            seen.clear()
            sample_batch(loaded, diffusion, [work[i][0] for i in part], [work[i][1] for i in part], opts, torch.device("cpu"))
            estimates = torch.stack(seen, 1)  # (B, steps, L, d)
            rows.update((i, estimates[r]) for r, i in enumerate(part))
    finally:
        hook.remove()
    return rows


@pytest.mark.parametrize("sampler,model", [("ddim", "tiny"), ("ddpm", "tiny"), ("ddim", "tiny_segment"), ("dpm++", "tiny_segment")])
def test_a_rows_arithmetic_does_not_depend_on_its_batch(sampler, model, request):
    # Bit for bit, not only tokens: every intermediate z_0 estimate of a row is the same whatever
    # the batch size and whichever rows share its batch. Without the one-row time MLP (in the
    # model's forward, when all rows share t) this fails
    # (batches of 1-3 rows take other BLAS code paths).
    tiny = request.getfixturevalue(model)
    opts = SamplingConfig(steps=3, seed=11, sampler=sampler)
    jobs = prepare(tiny, SOURCES, 0, opts)
    L = max({j.length for j in jobs}, key=[j.length for j in jobs].count)
    work = [(j, k) for j in jobs if j.length == L for k in range(2)][:24]
    reference = _z0_per_row(tiny, work, opts, list(range(len(work))), len(work))
    rnd = random.Random(0)
    for size in (1, 2, 3, 5, 7, 10):
        order = list(range(len(work)))
        rnd.shuffle(order)
        rows = _z0_per_row(tiny, work, opts, order, size)
        mismatched = [i for i in range(len(work)) if not torch.equal(rows[i], reference[i])]
        assert not mismatched, f"batches of {size}: rows {mismatched} differ"


def test_generate_texts_is_the_same_for_any_batch_size(tiny):
    opts = SamplingConfig(steps=5, seed=3)
    outs = [generate_texts(tiny, SOURCES, 3, dataclasses.replace(opts, batch_size=b)) for b in (1, 3, 64)]
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0]) == len(SOURCES) and all(len(c) == 3 for c in outs[0])
    assert len({c for cands in outs[0] for c in cands}) > len(SOURCES)  # candidates differ
    other_seed = generate_texts(tiny, SOURCES, 3, dataclasses.replace(opts, seed=4))
    assert other_seed != outs[0]


def test_streaming_gives_the_same_results_however_batches_are_formed(tiny):
    sampling = SamplingConfig(steps=5, seed=3)
    expected = generate_texts(tiny, SOURCES, 2, sampling)
    for batch, pending, flush in ((64, 0, 0.5), (2, 0, 0.5), (6, 3, 0.0), (200, 8, 0.0)):
        opts = GenerateOptions(num_samples=2, sampling=dataclasses.replace(sampling, batch_size=batch), max_pending=pending,
                               flush_seconds=flush)
        results = list(generate_stream(tiny, iter(SOURCES), opts))
        assert [r.line for r in results] == list(range(len(SOURCES)))
        assert [r.source for r in results] == SOURCES
        assert [r.candidates for r in results] == expected, (batch, pending, flush)


def test_stream_numbers_lines_from_start_line_for_resume(tiny):
    sampling = SamplingConfig(steps=3, seed=9)
    whole = list(generate_stream(tiny, iter(SOURCES[:10]), GenerateOptions(num_samples=2, sampling=sampling)))
    tail = list(generate_stream(tiny, iter(SOURCES[6:10]), GenerateOptions(num_samples=2, sampling=sampling), start_line=6))
    assert [(r.line, r.candidates, r.seeds) for r in tail] == [(r.line, r.candidates, r.seeds) for r in whole[6:]]


def test_empty_lines_pass_through_unsampled(tiny):
    opts = GenerateOptions(num_samples=3, mbr=True, sampling=SamplingConfig(steps=2))
    results = list(generate_stream(tiny, iter(["how are you?", "", "   ", "why?"]), opts))
    assert [r.candidates for r in results[1:3]] == [["", "", ""]] * 2
    assert all(r.candidates[0] for r in (results[0], results[3]))
    assert results[1].mbr == MBROutput(0, [0.0, 0.0, 0.0])


def test_in_process_mbr_chooses_as_rerank_does(tiny):
    opts = GenerateOptions(num_samples=10, mbr=True, sampling=SamplingConfig(steps=4, seed=1))
    results = list(generate_stream(tiny, iter(SOURCES[:12]), opts))
    reranked = list(rerank(iter(CandidateSet(r.candidates) for r in results)))
    assert [r.mbr.index for r in results] == [r.output.index for r in reranked]
    assert [r.mbr.scores for r in results] == [r.output.scores for r in reranked]
    assert len({r.mbr.index for r in results}) > 1  # random weights still give something to choose


# --- output formats and resume ----------------------------------------------------------------------
RESULT = LineResult(line=4, source="src", candidates=["a b", "c  d\te", "f"], seeds=[1, 2, 3], mbr=MBROutput(1, [0.5, 0.7, 0.1]))


def test_text_format_writes_the_choice_or_every_candidate():
    assert format_result(RESULT, "text", 3, mbr=True) == "c d e\n"
    assert format_result(RESULT, "text", 3, mbr=False) == "a b\nc d e\nf\n"
    single = LineResult(line=0, source="s", candidates=["only one"], seeds=[9])
    assert format_result(single, "text", 1, mbr=False) == "only one\n"


def test_jsonl_format_holds_candidates_seeds_and_the_mbr_choice():
    obj = json.loads(format_result(RESULT, "jsonl", 3, mbr=True))
    assert obj == {"line": 4, "src": "src", "candidates": ["a b", "c  d\te", "f"], "seeds": [1, 2, 3],
                   "mbr_choice": 1, "mbr_scores": [0.5, 0.7, 0.1], "best": "c  d\te", "truncated": False}


def test_lines_done_counts_only_complete_sources(tmp_path):
    path = tmp_path / "out.txt"
    assert lines_done(path, "text", 1, False) == (0, 0)
    path.write_bytes(b"one\ntwo\nthr")  # cut mid-line
    assert lines_done(path, "text", 1, False) == (2, 8)
    path.write_bytes(b"a1\na2\na3\nb1\nb2")  # -n 3 without --mbr: groups of three lines
    assert lines_done(path, "text", 3, False) == (1, 9)
    assert lines_done(path, "text", 3, True) == (4, 12)
    record = format_result(RESULT, "jsonl", 3, mbr=True).encode()
    path.write_bytes(record + record[:10])
    assert lines_done(path, "jsonl", 3, True) == (1, len(record))
    with pytest.raises(Exception, match="cannot resume"):
        lines_done(path, "jsonl", 5, True)  # written with another -n


# --- the rounding search in blocks ------------------------------------------------------------------
@pytest.mark.parametrize("rows", [1, 11, 48, 64 * 5 + 10, 2688])
def test_rounding_in_row_blocks_equals_one_distance_matrix(rows):
    from diffuseq_cli.core.rounding import round_to_embeddings

    g = torch.Generator().manual_seed(rows)
    table = torch.randn(6000, 16, generator=g)  # 6000 words: blocks of 64 rows
    z = table[torch.randint(6000, (rows,), generator=g)] + 0.3 * torch.randn(rows, 16, generator=g)
    z = z.view(1, rows, 16)
    dist = (table * table).sum(-1)[None, :] - 2 * z[0] @ table.T  # the whole (rows, V) matrix at once
    ids = dist.argmin(-1)
    got_rows, got_ids = round_to_embeddings(z, table)
    assert torch.equal(got_ids[0], ids) and torch.equal(got_rows[0], table[ids])


# --- starting from the source (--strength) ------------------------------------------------------------
def test_source_copied_into_target_aligns_the_copy_from_the_target_start():
    from diffuseq_cli.generation import source_copied_into_target

    CLS, SEP, PAD = 2, 3, 0
    ids = torch.tensor([[CLS, 7, 8, SEP, SEP, PAD, PAD, PAD, PAD, PAD], [CLS, 9, SEP, SEP, PAD, PAD, PAD, PAD, PAD, PAD]])
    mask = torch.tensor([[False] * 5 + [True] * 5, [False] * 4 + [True] * 6])
    out = source_copied_into_target(ids, mask, PAD)
    assert out.tolist() == [[CLS, 7, 8, SEP, SEP, CLS, 7, 8, SEP, PAD], [CLS, 9, SEP, SEP, CLS, 9, SEP, PAD, PAD, PAD]]
    short = torch.tensor([[False] * 5 + [True] * 2])  # a target part shorter than the copy: cut
    assert source_copied_into_target(ids[:1, :7], short, PAD).tolist() == [[CLS, 7, 8, SEP, SEP, CLS, 7]]


def test_strength_one_is_the_paper_sampler_and_lower_strength_starts_later(tiny):
    from diffuseq_cli.core.sampling import step_schedule

    full = generate_texts(tiny, SOURCES[:6], 2, SamplingConfig(steps=5, seed=1))
    assert generate_texts(tiny, SOURCES[:6], 2, SamplingConfig(steps=5, seed=1, strength=1.0)) == full
    assert generate_texts(tiny, SOURCES[:6], 2, SamplingConfig(steps=5, seed=1, strength=0.4)) != full
    assert step_schedule(5, 50, start=20) == [20, 15, 10, 5, 0]
    assert step_schedule(3, 50) == [49, 24, 0]
    with pytest.raises(ValueError):
        step_schedule(22, 50, start=20)
    with pytest.raises(ValueError):
        SamplingConfig(strength=0.0)
