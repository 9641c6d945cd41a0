"""Sentence metrics exactly as the official DiffuSeq evaluation defines them (DESIGN.md section 4).

Every function takes one already stripped line (or a prepared form of it) and
returns a float; averaging over lines and sources lives in ``report.py``.

* BLEU: NLTK's ``sentence_bleu([ref.split()], hyp.split(),
  smoothing_function=SmoothingFunction().method4)`` with one reference,
  reproduced operation by operation so that the floats come out identical,
  but from n-gram sets counted once per sentence (:class:`NgramStats`), so the
  O(K^2) pairs of self-BLEU and MBR do not recount (DESIGN.md section 5).
* ROUGE-L: LCS F-measure over lowercased ``[a-z0-9]+`` tokens (torchmetrics'
  default ``rougeL`` ``fmeasure``, no stemming), 0 when either side is empty.
* dist-1, div-4, average length; chrF (Popovic 2015) as an MBR utility.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

BLEU_ORDER = 4
_SMOOTH_K = 5  # NLTK SmoothingFunction(k=5): the constant of Chen & Cherry's method 4


@dataclass(frozen=True, slots=True)
class NgramStats:
    """A sentence's word n-grams (orders 1..4), counted once and reused for every pair.

    ``distinct[n - 1]`` is the set of its n-grams; ``occurrences[n - 1]`` the
    set of occurrence keys (see :func:`occurrence_keys`), so that the clipped
    match count of two sentences is the size of a set intersection, done in C.
    """

    length: int
    distinct: tuple[frozenset, ...]
    occurrences: tuple[frozenset, ...]


def ngrams(tokens: Sequence[str], n: int) -> list:
    """The n-grams of ``tokens`` in order (unigrams as plain tokens, longer ones as tuples)."""
    if n == 1:
        return list(tokens)
    return list(zip(*(tokens[i:] for i in range(n))))


def occurrence_keys(grams: Sequence[str], distinct: frozenset, sep: str) -> frozenset:
    """One key per occurrence: the gram itself the first time, ``gram + sep + str(c)`` the c-th repeat.

    Then |keys(a) & keys(b)| = sum over grams of min(count in a, count in b),
    the clipped count of BLEU and chrF. ``sep`` must not occur in a gram (or,
    for fixed-length grams, may be empty).
    """
    if len(distinct) == len(grams):
        return distinct
    repeats = [f"{gram}{sep}{c}" for gram, count in Counter(grams).items() if count > 1 for c in range(1, count)]
    return distinct.union(repeats)


def prepare(text: str) -> NgramStats:
    """Count the BLEU n-grams of ``text`` (split on whitespace) once.

    An n-gram is stored as its tokens joined by one space: unambiguous, since
    whitespace-split tokens hold no whitespace, and cheaper than tuples
    (strings cache their hash and are not tracked by the garbage collector).
    """
    tokens = text.split()
    distinct, occurrences = [], []
    found = tokens
    for n in range(1, BLEU_ORDER + 1):
        if n > 1:
            found = [left + " " + right for left, right in zip(found, tokens[n - 1 :])]
        keys = frozenset(found)
        distinct.append(keys)
        occurrences.append(occurrence_keys(found, keys, "\n"))
    return NgramStats(len(tokens), tuple(distinct), tuple(occurrences))


def distinct_from_stats(stats: Sequence[NgramStats], n: int) -> float:
    """:func:`distinct_n` over the texts behind ``stats`` (n <= 4), from the n-grams already counted."""
    total = sum(max(0, s.length - n + 1) for s in stats)
    return len(frozenset().union(*(s.distinct[n - 1] for s in stats))) / total if total else 0.0


def bleu_matches(a: NgramStats, b: NgramStats) -> list[int]:
    """Clipped n-gram matches per order: the sum over shared n-grams of the smaller count.

    Symmetric in ``a`` and ``b``, so one call serves both directions of a pair.
    Stops at the first order with no match: no longer n-gram can match then.
    """
    found = []
    for a_keys, b_keys in zip(a.occurrences, b.occurrences):
        common = len(a_keys & b_keys)
        if not common:
            break
        found.append(common)
    return found + [0] * (BLEU_ORDER - len(found))


def bleu_from_matches(matches: Sequence[int], hyp_len: int, ref_len: int) -> float:
    """NLTK sentence BLEU-4 with smoothing method 4 and one reference, bit for bit,
    from the match counts :func:`bleu_matches` gives (zeros only as a suffix).

    The NLTK details kept: 0 when no unigram matches (so for an empty side);
    each precision is matches / max(1, H - n + 1); a zero precision becomes
    ``1 / (2**k * 5 / ln H) / denominator`` for the k-th zero order, but only
    when H > 1 (for H == 1 it is dropped from the geometric mean, which NLTK
    does by skipping non-positive precisions); brevity penalty 1 when H > R,
    else exp(1 - R / H); the log-sum taken with ``math.fsum`` (correctly
    rounded, so the order of the terms does not matter). Same float
    operations, hence the same bits.
    """
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    terms = [0.25 * math.log(m / (hyp_len - n if hyp_len > n else 1)) for n, m in enumerate(matches) if m]
    if len(terms) < BLEU_ORDER and hyp_len > 1:
        terms.extend(_smoothed_terms(hyp_len, len(terms)))
    penalty = 1 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return penalty * math.exp(math.fsum(terms))


@functools.lru_cache(maxsize=4096)
def _smoothed_terms(hyp_len: int, matched_orders: int) -> tuple[float, ...]:
    """Method-4 log terms of the orders after the last matching one.

    Zero-match orders always form a suffix (a shared n-gram implies shared
    shorter ones), so these depend only on the hypothesis length and on how
    many orders matched: worth computing once.
    """
    terms = []
    for k, n in enumerate(range(matched_orders + 1, BLEU_ORDER + 1), start=1):
        denominator = max(1, hyp_len - n + 1)
        terms.append(0.25 * math.log(1 / (2**k * _SMOOTH_K / math.log(hyp_len)) / denominator))
    return tuple(terms)


def sentence_bleu(hyp: NgramStats | str, ref: NgramStats | str) -> float:
    """``nltk sentence_bleu([ref.split()], hyp.split(), smoothing_function=method4)`` (see above)."""
    if isinstance(hyp, str):
        hyp = prepare(hyp)
    if isinstance(ref, str):
        ref = prepare(ref)
    return bleu_from_matches(bleu_matches(hyp, ref), hyp.length, ref.length)


def bleu_both(a: NgramStats, b: NgramStats) -> tuple[float, float]:
    """``(sentence_bleu(a, b), sentence_bleu(b, a))`` from one match count."""
    matches = bleu_matches(a, b)
    return bleu_from_matches(matches, a.length, b.length), bleu_from_matches(matches, b.length, a.length)


_ALNUM_RUN = re.compile(r"[a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """ROUGE-L tokens: lowercase, every run outside ``[a-z0-9]`` is a separator."""
    return _ALNUM_RUN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison & Dix 1986; Hyyro 2004).

    Bit j of ``row`` is 1 while position j of ``b`` is still unmatched; each
    token of ``a`` updates all of ``b`` at once with integer arithmetic, so a
    pair costs len(a) big-int steps instead of len(a) * len(b) Python steps.
    """
    if not a or not b:
        return 0
    positions: dict[str, int] = {}
    for j, token in enumerate(b):
        positions[token] = positions.get(token, 0) | (1 << j)
    mask = (1 << len(b)) - 1
    row = mask
    for token in a:
        matched = row & positions.get(token, 0)
        row = ((row + matched) | (row - matched)) & mask
    return len(b) - row.bit_count()


def _float32(value: float) -> float:
    """Round to the nearest float32, as ``torch.tensor(value)`` does."""
    return struct.unpack("f", struct.pack("f", value))[0]


def rouge_l(hyp: Sequence[str] | str, ref: Sequence[str] | str) -> float:
    """ROUGE-L F-measure (beta 1) of token lists or raw strings; 0 if either is empty.

    The value is rounded to float32 because the official numbers are: torchmetrics
    returns each line's score as a float32 tensor before the mean is taken.
    """
    if isinstance(hyp, str):
        hyp = rouge_tokens(hyp)
    if isinstance(ref, str):
        ref = rouge_tokens(ref)
    if not hyp or not ref:
        return 0.0
    lcs = lcs_length(hyp, ref)
    if lcs == 0:
        return 0.0
    precision = lcs / len(hyp)
    recall = lcs / len(ref)
    return _float32(2 * precision * recall / (precision + recall))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct / total n-grams pooled over ``texts`` (whitespace split); 0 when there are none.

    One line gives dist-n; the candidates of one source give div-n.
    """
    pooled = []
    for text in texts:
        pooled.extend(ngrams(text.split(), n))
    return len(set(pooled)) / len(pooled) if pooled else 0.0


def avg_len(text: str) -> int:
    """The official "length": ``len(line.split(' '))``, so an empty line counts 1."""
    return len(text.split(" "))


def repeats_word(text: str) -> bool:
    """Whether some whitespace-separated word is immediately followed by itself ("to to", a stutter)."""
    words = text.split()
    return any(a == b for a, b in zip(words, words[1:]))


def same_words(a: str, b: str) -> bool:
    """Whether two lines hold the same words (whitespace-normalised): what counts as a copy."""
    return a.split() == b.split()


IBLEU_ALPHA = 0.8  # Sun and Zhou (2012); the weight most paraphrase papers report with


def ibleu(bleu_ref: float, bleu_src: float, alpha: float = IBLEU_ALPHA) -> float:
    """iBLEU: alpha·BLEU(hyp, ref) - (1-alpha)·BLEU(hyp, src); paraphrasing by copying is not rewarded."""
    return alpha * bleu_ref - (1 - alpha) * bleu_src


CHRF_ORDER = 6
CHRF_BETA = 2


def prepare_chrf(text: str) -> tuple[tuple[frozenset, int], ...]:
    """Per order 1..6: the occurrence keys of the character n-grams of ``text``
    (whitespace removed), and their number."""
    chars = "".join(text.split())
    out = []
    for n in range(1, CHRF_ORDER + 1):
        grams = [chars[i : i + n] for i in range(len(chars) - n + 1)]
        out.append((occurrence_keys(grams, frozenset(grams), ""), len(grams)))
    return tuple(out)


def chrf_matches(a, b) -> list[int]:
    """Character n-gram matches per order (the smaller count of each shared n-gram); symmetric."""
    return [len(a_keys & b_keys) for (a_keys, _), (b_keys, _) in zip(a, b)]


def chrf_from_matches(matches: Sequence[int], hyp, ref) -> float:
    """chrF (beta 2): F-score of character n-gram precision and recall, each averaged over orders.

    Orders where either side has no n-grams (short strings) are left out of
    the averages; with none left the score is 0.
    """
    precision = recall = 0.0
    orders = 0
    for found, (_, hyp_total), (_, ref_total) in zip(matches, hyp, ref):
        if hyp_total and ref_total:
            precision += found / hyp_total
            recall += found / ref_total
            orders += 1
    if not orders or not (precision or recall):
        return 0.0
    precision /= orders
    recall /= orders
    beta2 = CHRF_BETA**2
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def chrf(hyp, ref) -> float:
    """chrF of two strings (or :func:`prepare_chrf` outputs)."""
    if isinstance(hyp, str):
        hyp = prepare_chrf(hyp)
    if isinstance(ref, str):
        ref = prepare_chrf(ref)
    return chrf_from_matches(chrf_matches(hyp, ref), hyp, ref)


def chrf_both(a, b) -> tuple[float, float]:
    """``(chrf(a, b), chrf(b, a))`` from one match count."""
    matches = chrf_matches(a, b)
    return chrf_from_matches(matches, a, b), chrf_from_matches(matches, b, a)


def rouge_l_both(a: Sequence[str], b: Sequence[str]) -> tuple[float, float]:
    """ROUGE-L F1 is symmetric (to the bit), so one LCS serves both directions."""
    score = rouge_l(a, b)
    return score, score
