"""Metrics: bit parity with NLTK's BLEU, pinned values, and the official numbers of expected.json."""

import json
import random
import warnings
from pathlib import Path

import pytest
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu

from diffuseq_cli import __version__
from diffuseq_cli.evaluation import metrics
from diffuseq_cli.evaluation.columns import active_metrics, signature
from diffuseq_cli.evaluation.report import evaluate, load_inputs

from paths import SHARED, require_shared

require_shared(module=True)
FIXTURE = SHARED / "fixtures" / "eval-qqp-valid"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _lines(name):
    return (FIXTURE / name).read_text(encoding="utf-8").split("\n")[:200]


def _nltk(hyp, ref):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nltk_sentence_bleu([ref.split()], hyp.split(), smoothing_function=SmoothingFunction().method4)


def _pairs():
    refs = _lines("refs.txt")
    cands = [_lines(f"cand{k}.txt") for k in range(5)]
    pairs = [(c[i], refs[i]) for c in cands for i in range(200)]
    pairs += [(cands[a][i], cands[b][i]) for i in range(0, 200, 4) for a in range(5) for b in range(5)]
    qqp = (SHARED / "data" / "QQP" / "valid.jsonl").read_text(encoding="utf-8").splitlines()[:600]
    for row in map(json.loads, qqp):
        pairs += [(row["src"], row["trg"]), (row["trg"], row["src"])]
    rng = random.Random(0)
    vocab = "a b c the of is what how why".split()  # small: many repeats and partial matches
    for _ in range(3000):
        hyp = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 7)))
        ref = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 7)))
        pairs.append((hyp, ref))
    pairs += [("", ""), ("", "a b"), ("a", ""), ("a", "a"), ("a", "a b c d e"), ("a b", "a b"), ("a b c", "a b c"),
              ("a a a a", "a"), ("  a\tb ", "a b"), ("x y z", "a b c"), ("a b c d", "a b c d")]
    return pairs


def test_bleu_matches_nltk_on_real_random_and_corner_cases():
    pairs = _pairs()
    assert len(pairs) > 5000
    worst = max(abs(metrics.sentence_bleu(h, r) - _nltk(h, r)) for h, r in pairs)
    assert worst <= 1e-12


def test_bleu_on_prepared_stats_equals_strings():
    hyp, ref = "what is the best way to learn", "what is the way to learn the best"
    assert metrics.sentence_bleu(metrics.prepare(hyp), metrics.prepare(ref)) == metrics.sentence_bleu(hyp, ref)


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ("", "a b", 0.0),  # empty hypothesis
        ("a b", "", 0.0),  # empty reference
        ("x y", "a b", 0.0),  # no unigram match
        ("a", "a", 1.0),  # one token: zero higher orders are dropped, not smoothed
        ("a b c d", "a b c d", 1.0),
    ],
)
def test_bleu_pinned(hyp, ref, expected):
    assert metrics.sentence_bleu(hyp, ref) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ("The cat sat.", "the cat sat", 1.0),
        ("a b c d", "a c e", 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)),
        ("What's up?", "what s up", 1.0),  # punctuation separates tokens
        ("", "a", 0.0),
        ("!!!", "a", 0.0),  # nothing left after normalisation counts as empty
        ("x", "y", 0.0),
    ],
)
def test_rouge_l_pinned(hyp, ref, expected):
    assert metrics.rouge_l(hyp, ref) == pytest.approx(expected, abs=1e-7)


def test_rouge_l_is_rounded_to_float32_like_torchmetrics():
    value = metrics.rouge_l("a b c d", "a c e")
    assert value != 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    assert value == metrics._float32(4 / 7)


@pytest.mark.parametrize("a, b, expected", [("abcbdab", "bdcaba", 4), ("", "abc", 0), ("abc", "abc", 3), ("ab", "ba", 1)])
def test_lcs_length(a, b, expected):
    assert metrics.lcs_length(list(a), list(b)) == expected


@pytest.mark.parametrize(
    "texts, n, expected",
    [
        (["a b a"], 1, 2 / 3),
        ([""], 1, 0.0),
        (["a b c d", "a b c d"], 4, 0.5),
        (["a b c"], 4, 0.0),
        (["a b c d e", "x y z w"], 4, 1.0),
    ],
)
def test_distinct_n(texts, n, expected):
    assert metrics.distinct_n(texts, n) == pytest.approx(expected)


@pytest.mark.parametrize("text, expected", [("", 1), ("a b", 2), ("a  b", 3)])
def test_avg_len_counts_single_space_fields(text, expected):
    assert metrics.avg_len(text) == expected


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ("same text", "same text", 1.0),
        ("abc", "xyz", 0.0),
        ("", "abc", 0.0),
        # orders 1 and 2 only (3+ absent on the hypothesis side): P = (2/2 + 1/1)/2, R = (2/3 + 1/2)/2
        ("ab", "abc", 5 * 1.0 * (7 / 12) / (4 * 1.0 + 7 / 12)),
    ],
)
def test_chrf_pinned(hyp, ref, expected):
    assert metrics.chrf(hyp, ref) == pytest.approx(expected, abs=1e-12)


def test_signature_names_settings_and_version():
    plain = active_metrics(sources=False)
    assert signature(plain, 5) == f"diffuseq-eval|bleu:nltk-s4|rougeL:lcs-lower|dist:1|n:5|v:{__version__}"
    assert "|n:5|mbr:bleu|" in signature(plain, 5, mbr="bleu")
    full = active_metrics(sources=True, bertscore_model="m")
    assert signature(full, 2, mbr="bleu").endswith(f"|n:2|mbr:bleu|bertscore:m|ibleu:0.8|v:{__version__}")


@pytest.fixture(scope="module")
def report():
    paths = [FIXTURE / f"cand{k}.txt" for k in range(5)]
    columns, names, refs, sources = load_inputs(paths, FIXTURE / "refs.txt", sources_path=FIXTURE / "sources.txt")
    return evaluate(columns, refs, names=names, sources=sources, mbr=True)


@pytest.mark.parametrize("k", range(5))
@pytest.mark.parametrize("key", ["bleu", "rouge_l", "dist_1", "avg_len"])
def test_per_file_equals_official(report, k, key):
    assert getattr(report.files[k], key) == pytest.approx(EXPECTED["per_file"][k][key], abs=1e-9)


@pytest.mark.parametrize("key", ["bleu", "rouge_l", "dist_1", "avg_len"])
def test_mbr_row_equals_official(report, key):
    assert getattr(report.mbr, key) == pytest.approx(EXPECTED["mbr"][key], abs=1e-9)


def test_self_bleu_div4_and_choice_equal_official(report):
    assert report.self_bleu == pytest.approx(EXPECTED["self_bleu"], abs=1e-9)
    assert report.div_4 == pytest.approx(EXPECTED["div_4"], abs=1e-9)
    assert report.mbr_choice == EXPECTED["mbr_choice"]


def test_copy_source_row_is_bleu_of_sources(report):
    sources, refs = _lines("sources.txt"), _lines("refs.txt")
    expected = sum(_nltk(s.strip(), r.strip()) for s, r in zip(sources, refs)) / len(refs)
    assert report.source.name == "source"
    assert report.source.bleu == pytest.approx(expected, abs=1e-12)


def test_one_sample_has_no_set_metrics():
    rep = evaluate([["a b c d", ""]], ["a b c d", "x"])
    assert rep.self_bleu is None and rep.div_4 is None and rep.mbr is None
    assert rep.files[0].bleu == pytest.approx(0.5)
    assert rep.files[0].avg_len == 2.5  # "a b c d" is 4, "" counts 1


def test_metric_modules_stay_pure():
    import ast

    root = Path(metrics.__file__).parents[1]
    for name in ["evaluation/metrics.py", "evaluation/mbr.py", "evaluation/report.py", "evaluation/rerank.py", "textio.py"]:
        tree = ast.parse((root / name).read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"typer", "rich", "torch", "click"}, name
        assert "print(" not in (root / name).read_text(), name


def _lcs_table(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_equals_the_dp_table():
    rng = random.Random(5)
    for _ in range(3000):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]  # beyond 64 bits too
        assert metrics.lcs_length(a, b) == _lcs_table(a, b)


def test_prepared_shortcuts_equal_the_plain_definitions():
    lines = _lines("cand0.txt") + _lines("refs.txt") + ["a a a a a", "", "x"]
    stats = [metrics.prepare(line) for line in lines]
    for line, s in zip(lines, stats):
        assert metrics.distinct_from_stats([s], 1) == metrics.distinct_n([line], 1)
    for i in range(0, len(lines) - 5, 5):
        assert metrics.distinct_from_stats(stats[i : i + 5], 4) == metrics.distinct_n(lines[i : i + 5], 4)
    for a, b in zip(stats[:100], stats[200:300]):
        assert metrics.bleu_both(a, b) == (metrics.sentence_bleu(a, b), metrics.sentence_bleu(b, a))
    for a, b in zip(lines[:50], lines[200:250]):
        pa, pb = metrics.prepare_chrf(a), metrics.prepare_chrf(b)
        assert metrics.chrf_both(pa, pb) == (metrics.chrf(a, b), metrics.chrf(b, a))
        assert metrics.rouge_l(a, b) == metrics.rouge_l(b, a)
