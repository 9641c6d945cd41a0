"""Minimum Bayes risk selection over one source's candidates (DiffuSeq paper, section 3, "MBR").

The expected utility of candidate i is the sum over j != i of
``utility(hyp=candidates[i], ref=candidates[j])`` (the paper uses BLEU); MBR
picks the argmax, the first on ties. Each candidate is prepared (tokenized,
n-grams counted) once, and each unordered pair is matched once for both
directions, so a set of K costs K preparations and K(K-1)/2 set
intersections per n-gram order. Row sums are added in NumPy's pairwise order so that
near-ties break exactly as the official ``np.argmax(np.sum(matrix, -1))`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import DataError, UsageError
from . import metrics


@dataclass(frozen=True)
class Utility:
    """A pairwise metric split into a once-per-candidate ``prepare`` and a per-pair ``both``.

    ``both(a, b)`` returns ``(utility(hyp=a, ref=b), utility(hyp=b, ref=a))``:
    the matches are symmetric, so each unordered pair is counted once.
    """

    name: str
    prepare: Callable[[str], object]
    both: Callable[[object, object], tuple[float, float]]


UTILITIES = {
    "bleu": Utility("bleu", metrics.prepare, metrics.bleu_both),
    "rouge_l": Utility("rouge_l", metrics.rouge_tokens, metrics.rouge_l_both),
    "chrf": Utility("chrf", metrics.prepare_chrf, metrics.chrf_both),
}


@dataclass(frozen=True)
class MBROutput:
    """The chosen candidate's ``index`` and every candidate's expected utility ``scores``."""

    index: int
    scores: list[float]

    def ranking(self) -> list[int]:
        """Candidate indices best first; ties keep the earlier candidate first."""
        return sorted(range(len(self.scores)), key=lambda i: (-self.scores[i], i))


def get_utility(metric: str) -> Utility:
    """The utility called ``metric``; a clear usage error for unknown names."""
    try:
        return UTILITIES[metric]
    except KeyError:
        raise UsageError(f"unknown MBR metric {metric!r}; choose one of: {', '.join(UTILITIES)}") from None


def pair_matrix(prepared: Sequence, both: Callable) -> list[list[float]]:
    """``matrix[i][j] = utility(hyp=i, ref=j)`` of prepared candidates, 0 on the diagonal."""
    k = len(prepared)
    matrix = [[0.0] * k for _ in range(k)]
    for i in range(k):
        row, a = matrix[i], prepared[i]
        for j in range(i + 1, k):
            row[j], matrix[j][i] = both(a, prepared[j])
    return matrix


def utility_matrix(candidates: Sequence[str], metric: str = "bleu") -> list[list[float]]:
    """``matrix[i][j] = utility(hyp=candidates[i], ref=candidates[j])``, with 0 on the diagonal."""
    utility = get_utility(metric)
    return pair_matrix([utility.prepare(text.strip()) for text in candidates], utility.both)


def pairwise_sum(values: Sequence[float]) -> float:
    """Sum in NumPy's order for a contiguous float64 row (8-way unrolled blocks, halving above 128).

    Written out so that this module needs no NumPy and ties break like the official code.
    """
    n = len(values)
    if n < 8:
        total = -0.0
        for value in values:
            total += value
        return total
    if n > 128:
        half = n // 2
        half -= half % 8
        return pairwise_sum(values[:half]) + pairwise_sum(values[half:])
    acc = list(values[:8])
    stop = n - n % 8
    for start in range(8, stop, 8):
        for k in range(8):
            acc[k] += values[start + k]
    total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for value in values[stop:]:
        total += value
    return total


def select_from_matrix(matrix: Sequence[Sequence[float]]) -> MBROutput:
    """MBR choice from a utility matrix whose diagonal is 0."""
    scores = [pairwise_sum(row) for row in matrix]
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best]:
            best = i
    return MBROutput(best, scores)


def mbr_select(candidates: Sequence[str], metric: str = "bleu") -> MBROutput:
    """Pick the candidate that agrees most with the others (stable API, used by ``generate``).

    ``candidates``: the K strings sampled for one source (K >= 1).
    ``metric``: "bleu" (the paper's: NLTK sentence BLEU, smoothing 4), "rouge_l" or "chrf".
    Returns ``MBROutput(index, scores)``: ``scores[i]`` is the sum over j != i of
    ``utility(hyp=candidates[i], ref=candidates[j])``; ``index`` is the argmax, first on ties.
    """
    if not candidates:
        raise DataError("MBR needs at least one candidate")
    return select_from_matrix(utility_matrix(candidates, metric))


def mbr_select_many(candidate_sets: Iterable[Sequence[str]], metric: str = "bleu") -> Iterator[MBROutput]:
    """:func:`mbr_select` for each set, lazily (input order kept, memory flat)."""
    get_utility(metric)
    for candidates in candidate_sets:
        yield mbr_select(candidates, metric)
