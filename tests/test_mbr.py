"""MBR: the official choice on the fixture, the score definition, tie-breaking, and the summation order."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from diffuseq_cli.errors import DataError, UsageError
from diffuseq_cli.evaluation import mbr, metrics

from paths import FIXTURES, require_shared

require_shared(module=True)
FIXTURE = FIXTURES / "eval-qqp-valid"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def candidate_sets():
    files = [(FIXTURE / f"cand{k}.txt").read_text(encoding="utf-8").split("\n")[:200] for k in range(5)]
    return [list(row) for row in zip(*files)]


def test_choice_equals_official(candidate_sets):
    assert [mbr.mbr_select(c).index for c in candidate_sets] == EXPECTED["mbr_choice"]


def test_batch_helper_equals_one_by_one(candidate_sets):
    batch = list(mbr.mbr_select_many(candidate_sets[:30], metric="chrf"))
    assert batch == [mbr.mbr_select(c, metric="chrf") for c in candidate_sets[:30]]


def test_scores_are_summed_bleu_against_the_others(candidate_sets):
    cands = candidate_sets[7]
    out = mbr.mbr_select(cands)
    for i, hyp in enumerate(cands):
        expected = sum(metrics.sentence_bleu(hyp.strip(), ref.strip()) for j, ref in enumerate(cands) if j != i)
        assert out.scores[i] == pytest.approx(expected, abs=1e-12)
    assert out.index == max(range(len(cands)), key=lambda i: (out.scores[i], -i))


@pytest.mark.parametrize(
    "candidates, metric, index",
    [
        (["only one"], "bleu", 0),
        (["a b c d", "x y z w"], "bleu", 0),  # all zero: first wins the tie
        (["x y z w", "a b c d e", "a b c d e"], "bleu", 1),  # duplicates tie: the first of them
        (["the cat sat on the mat", "a dog ran", "the cat sat on a mat", "the cat is on the mat"], "bleu", 0),
        (["the cat sat on the mat", "a dog ran", "the cat sat on a mat", "the cat is on the mat"], "rouge_l", 2),
        (["the cat sat on the mat", "a dog ran", "the cat sat on a mat", "the cat is on the mat"], "chrf", 0),
        (["zzz", "hello world", "hello worlds", "hello word"], "chrf", 2),  # recall-weighted: the superset wins
    ],
)
def test_selection_table(candidates, metric, index):
    assert mbr.mbr_select(candidates, metric=metric).index == index


def test_ranking_is_best_first_with_ties_in_order():
    out = mbr.MBROutput(1, [0.5, 2.0, 0.5, 1.0])
    assert out.ranking() == [1, 3, 0, 2]


def test_each_candidate_is_prepared_once(monkeypatch):
    calls = []
    real = mbr.UTILITIES["bleu"]
    counting = mbr.Utility("bleu", lambda text: calls.append(text) or real.prepare(text), real.both)
    monkeypatch.setitem(mbr.UTILITIES, "bleu", counting)
    mbr.mbr_select([f"candidate number {i} here" for i in range(10)])
    assert len(calls) == 10


def test_errors():
    with pytest.raises(DataError):
        mbr.mbr_select([])
    with pytest.raises(UsageError, match="bleu, rouge_l, chrf"):
        mbr.mbr_select(["a", "b"], metric="meteor")


def test_pairwise_sum_matches_numpy_row_sums_bit_for_bit():
    rng = random.Random(3)
    for n in list(range(1, 20)) + [64, 127, 128, 129, 200, 300]:
        rows = [[rng.random() * 10 ** rng.randint(-6, 6) for _ in range(n)] for _ in range(4)]
        assert [mbr.pairwise_sum(r) for r in rows] == np.sum(np.array(rows), -1).tolist()
