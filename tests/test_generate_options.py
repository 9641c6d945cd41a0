"""Generation options end to end: --avoid-copy reaching the MBR choice through the stream, --dedup
with --mbr, the length beam's first entry, and seeds taken modulo 2³² (docs/generate.md)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from diffuseq_cli.cli import main
from diffuseq_cli.evaluation.mbr import mbr_select
from diffuseq_cli.evaluation.metrics import repeats_word, same_words
from diffuseq_cli.generation import GenerateOptions, SamplingConfig, generate_stream, generate_texts, prepare
from diffuseq_cli.generation import stream as stream_mod
from diffuseq_cli.generation.batches import collapse_repeats
from diffuseq_cli.modelfiles.folder import load_model_folder
from diffuseq_cli.training.data import read_pairs

from helpers_models import build_tiny_model
from paths import QQP_VALID, require_shared

require_shared(module=True)

SOURCES = [s for s, _, _ in read_pairs(QQP_VALID)][:12]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def tiny(folder):
    return load_model_folder(folder)


def with_decoding(loaded, **decoding):
    config = loaded.config
    return dataclasses.replace(loaded, config=dataclasses.replace(config, decoding=dataclasses.replace(config.decoding, **decoding)))


# --- --avoid-copy through generate_stream --------------------------------------------------------------
SOURCE = "how do i learn python ?"
# Two copies of the source agree with each other most: plain MBR picks a copy; the best-ranked
# candidate that changes something is "how can i learn python ?".
CANDIDATES = [SOURCE, "how can i learn python ?", SOURCE, "what is python ?"]


@pytest.fixture
def scripted(monkeypatch):
    """The model's candidates replaced by CANDIDATES; everything after sampling runs as it is."""
    def sample_jobs(loaded, diffusion, jobs, ks, *args):
        return [k for k in ks]

    def decode_rows(loaded, rows, opts):
        return [CANDIDATES[k] for k in rows]

    monkeypatch.setattr(stream_mod, "sample_jobs", sample_jobs)
    monkeypatch.setattr(stream_mod, "decode_rows", decode_rows)


@pytest.mark.parametrize("avoid_copy, model_default, best", [
    (None, False, SOURCE),  # the model's default: off
    (None, True, CANDIDATES[1]),  # the model's default: on
    (True, False, CANDIDATES[1]),
    (False, True, SOURCE),  # --allow-copy beats the model's default
])
def test_avoid_copy_reaches_the_mbr_choice(tiny, scripted, avoid_copy, model_default, best):
    assert mbr_select(CANDIDATES).index in (0, 2)  # the premise: plain MBR picks a copy
    loaded = with_decoding(tiny, avoid_copy=model_default)
    opts = GenerateOptions(num_samples=4, mbr=True, avoid_copy=avoid_copy, sampling=SamplingConfig(steps=2))
    [result] = list(generate_stream(loaded, [SOURCE], opts))
    assert result.candidates == CANDIDATES
    assert result.best == best


def test_avoid_copy_keeps_a_copy_when_every_candidate_is_one(tiny, monkeypatch):
    monkeypatch.setattr(stream_mod, "sample_jobs", lambda loaded, diffusion, jobs, ks, *a: list(ks))
    monkeypatch.setattr(stream_mod, "decode_rows", lambda loaded, rows, opts: [SOURCE] * len(rows))
    opts = GenerateOptions(num_samples=3, mbr=True, avoid_copy=True, sampling=SamplingConfig(steps=2))
    [result] = list(generate_stream(tiny, [SOURCE], opts))
    assert same_words(result.best, SOURCE)


# --- --dedup with --mbr ----------------------------------------------------------------------------------
def test_dedup_collapses_every_candidate_before_mbr_chooses(tiny):
    sampling = SamplingConfig(steps=3, seed=1)
    raw = list(generate_stream(tiny, SOURCES, GenerateOptions(num_samples=4, mbr=True, sampling=sampling)))
    dedup = list(generate_stream(tiny, SOURCES, GenerateOptions(
        num_samples=4, mbr=True, sampling=dataclasses.replace(sampling, dedup=True))))
    assert any(repeats_word(c) for r in raw for c in r.candidates)  # the premise: this model stutters
    for plain, collapsed in zip(raw, dedup, strict=True):
        assert collapsed.candidates == [collapse_repeats(c) for c in plain.candidates]  # same samples, collapsed
        assert not any(repeats_word(c) for c in collapsed.candidates)
        assert collapsed.mbr.index == mbr_select(collapsed.candidates).index  # chosen among the collapsed texts
        assert not repeats_word(collapsed.best)
    assert [r.mbr.index for r in raw] != [r.mbr.index for r in dedup]  # collapsing can change the choice


# --- the length beam -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def headed(tmp_path_factory):
    folder = build_tiny_model(tmp_path_factory.mktemp("models") / "headed", length_head=True, seed=3)
    return load_model_folder(folder)


def _head_ranking(loaded, src: list[int]) -> list[int]:
    """Target word counts by the head's logits for one packed source, most likely first (0 words excluded)."""
    ids = torch.tensor([src])
    with torch.no_grad():
        logits = loaded.model.length_logits(ids, torch.ones_like(ids, dtype=torch.bool))[0]
    return [w for w in logits.argsort(descending=True).tolist() if w >= 1]


def test_the_length_beam_starts_with_the_heads_most_likely_length(headed):
    seq_len = headed.config.sequence.seq_len
    jobs = prepare(headed, SOURCES, 0, SamplingConfig(lengths=3))  # predict: the model has a head
    firsts = set()
    for job in jobs:
        ranking = _head_ranking(headed, job.src)
        assert job.length == min(seq_len, len(job.src) + ranking[0] + 2)  # [CLS] y [SEP] of the likeliest size
        assert job.length_of(0) == job.length and len(job.lengths) <= 3
        firsts.add(ranking[0])
        alone = prepare(headed, [SOURCES[job.line]], job.line, SamplingConfig(lengths=3))[0]
        assert alone.lengths == job.lengths  # the batch's padding does not move the prediction
    assert len(firsts) > 1  # the head's choice varies with the source: the check is not one constant


# --- seeds modulo 2³² -----------------------------------------------------------------------------------
def test_seeds_are_taken_modulo_two_to_the_32(tiny):
    sampling = SamplingConfig(steps=3, seed=7)
    base = generate_texts(tiny, SOURCES[:4], 2, sampling)
    assert generate_texts(tiny, SOURCES[:4], 2, dataclasses.replace(sampling, seed=7 + 2**32)) == base
    assert generate_texts(tiny, SOURCES[:4], 2, dataclasses.replace(sampling, seed=8)) != base


def test_cli_seed_minus_one_is_two_to_the_32_minus_one(folder, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SOURCES[:3]) + "\n")
    runs = {}
    for seed in ("-1", str(2**32 - 1), "0"):
        with pytest.raises(SystemExit) as info:
            main(["generate", "-m", str(folder), "-i", str(src), "--steps", "3", "-n", "2", "-f", "jsonl",
                  "--seed", seed, "-q"])
        assert (info.value.code or 0) == 0
        runs[seed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert runs["-1"] == runs[str(2**32 - 1)]
    assert [r["candidates"] for r in runs["-1"]] != [r["candidates"] for r in runs["0"]]
