"""The report columns our paraphrase results stand on: iBLEU, copies and repeats, against values
computed by hand, through the library and through `diffuseq evaluate -f json`."""

import json
import math

import pytest

from diffuseq_cli.cli import main
from diffuseq_cli.evaluation import metrics
from diffuseq_cli.evaluation.report import evaluate

PREDS = ["a a b", "q"]
REFS = ["a b", "x y"]
SOURCES = ["a b", "q"]

# BLEU("a a b", "a b") by hand, as NLTK's method4 smooths it: clipped unigrams 2/3, bigrams 1/2,
# no trigram or 4-gram match (the i-th missing order becomes 1 / (2^i · 5 / ln 3)); hypothesis
# longer than the reference, so no brevity penalty.
BLEU_AAB_AB = math.exp(sum(map(math.log, [2 / 3, 1 / 2, math.log(3) / 10, math.log(3) / 20])) / 4)
# iBLEU per line = 0.8·BLEU(pred, ref) − 0.2·BLEU(pred, src):
#   line 1: the source equals the reference, so 0.6·BLEU("a a b", "a b");
#   line 2: nothing in common with "x y" (0), and a copy of its source (BLEU 1).
IBLEU = (0.6 * BLEU_AAB_AB + (0.0 - 0.2 * 1.0)) / 2
# A two-word line against itself: both orders match, orders 3 and 4 are smoothed (ln 2 / 10, ln 2 / 20).
BLEU_TWO_WORDS_SAME = math.exp(sum(map(math.log, [1, 1, math.log(2) / 10, math.log(2) / 20])) / 4)


def test_the_hand_computed_bleu_is_the_one_evaluate_uses():
    assert BLEU_AAB_AB == pytest.approx(0.21177974, abs=1e-8)
    assert metrics.sentence_bleu("a a b", "a b") == pytest.approx(BLEU_AAB_AB, abs=1e-15)
    assert metrics.sentence_bleu("q", "q") == 1.0 and metrics.sentence_bleu("q", "x y") == 0.0
    assert metrics.sentence_bleu("x y", "x y") == pytest.approx(BLEU_TWO_WORDS_SAME, abs=1e-15)


def test_ibleu_copies_and_repeats_by_hand():
    row = evaluate([PREDS], REFS, sources=SOURCES).files[0]
    assert row.repeat == 0.5  # "a a b" repeats a word; "q" does not
    assert row.copy == 0.5  # "q" equals its source; "a a b" does not
    assert row.ibleu == pytest.approx(IBLEU, abs=1e-15)
    assert row.ibleu == pytest.approx(-0.0364660776, abs=1e-10)


def test_the_source_row_copies_everything_and_mbr_keeps_the_chosen_lines_values():
    report = evaluate([PREDS, ["a b", "x y"]], REFS, sources=SOURCES, mbr=True)
    assert report.source.copy == 1.0 and report.source.repeat == 0.0
    second = report.files[1]  # "a b" copies source 1 and is reference 1; "x y" is reference 2
    assert second.copy == 0.5 and second.repeat == 0.0
    assert second.ibleu == pytest.approx(((0.8 - 0.2) * BLEU_TWO_WORDS_SAME + 0.8 * BLEU_TWO_WORDS_SAME) / 2, abs=1e-15)
    # MBR over two candidates: their BLEU against each other decides ("a a b" vs "a b" differs by
    # direction); the MBR row's columns are those of the chosen lines, not recomputed averages
    chosen = [[PREDS, ["a b", "x y"]][k][i] for i, k in enumerate(report.mbr_choice)]
    alone = evaluate([chosen], REFS, sources=SOURCES).files[0]
    assert report.mbr.values == alone.values


@pytest.mark.parametrize("text, repeats", [
    ("to to", True), ("a b a", False), ("what is is it", True), ("", False), ("a", False),
    ("Is is", False),  # case matters: the words differ
    ("a  a", True),  # whitespace between does not
])
def test_what_counts_as_a_repeat(text, repeats):
    assert metrics.repeats_word(text) is repeats


@pytest.mark.parametrize("a, b, same", [
    ("how are you ?", "how  are you ?", True), ("how are you", "how are you ?", False), ("", "", True),
    ("How are you", "how are you", False),
])
def test_what_counts_as_a_copy(a, b, same):
    assert metrics.same_words(a, b) is same


def test_cli_json_carries_the_same_values(tmp_path, capsys):
    files = {}
    for name, lines in (("preds", PREDS), ("refs", REFS), ("srcs", SOURCES)):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(files["preds"]), str(files["refs"]), "--sources", str(files["srcs"]), "-f", "json"])
    assert (info.value.code or 0) == 0
    data = json.loads(capsys.readouterr().out)
    row = data["files"][0]
    assert (row["repeat"], row["copy"]) == (0.5, 0.5)
    assert row["ibleu"] == pytest.approx(IBLEU, abs=1e-15)
    assert data["source"]["copy"] == 1.0
    assert data["signature"].endswith("|ibleu:0.8|v:0.1.0")
