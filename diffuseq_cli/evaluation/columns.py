"""The metrics of ``diffuseq evaluate``'s report, one object each (sacrebleu's metric classes).

A metric has a name (its key in the report's JSON), a table header and number format, a
score per line, an aggregation over lines and a part of the report's signature. The report
(``report.py``) and its table and text output iterate these objects: adding a metric is
one object in ``METRICS``, nothing else. The per-line arithmetic is ``metrics.py``'s, the
official evaluation's to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._version import __version__
from ..errors import DiffuseqError
from . import metrics


@dataclass(frozen=True, slots=True)
class Line:
    """A stripped line, prepared once for every metric: its n-gram sets and its ROUGE tokens."""

    text: str
    stats: metrics.NgramStats
    rouge: list[str]


def prepare_lines(texts: Sequence[str]) -> list[Line]:
    return [Line(t, metrics.prepare(t), metrics.rouge_tokens(t)) for t in texts]


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


class Metric:
    """One column of the report. Subclasses give ``sentence`` (or, for batched scorers, ``line_scores``)."""

    name: str  # JSON key and Score attribute
    header: str  # table column
    fmt: str = ".4f"
    signature: str | None = None  # its part of the report's signature, when it has settings to state
    needs_sources: bool = False
    legend: str | None = None  # a line under the table, for columns whose meaning is not standard

    def sentence(self, hyp: Line, ref: Line, src: Line | None) -> float:
        raise NotImplementedError

    def line_scores(self, hyps: Sequence[Line], refs: Sequence[Line], srcs: Sequence[Line] | None,
                    earlier: dict[str, list[float]]) -> list[float]:
        """One value per line; ``earlier`` holds the columns scored before this one (reusable)."""
        srcs = srcs if srcs is not None else [None] * len(hyps)
        return [self.sentence(h, r, s) for h, r, s in zip(hyps, refs, srcs)]

    def aggregate(self, values: Sequence[float]) -> float:
        """The corpus figure: the mean over lines, as the official evaluation averages."""
        return mean(values)


class _Sentence(Metric):
    def __init__(self, name, header, score, *, fmt=".4f", signature=None, legend=None, needs_sources=False):
        self.name, self.header, self._score = name, header, score
        self.fmt, self.signature, self.legend, self.needs_sources = fmt, signature, legend, needs_sources

    def sentence(self, hyp, ref, src):
        return self._score(hyp, ref, src)


class IBLEU(Metric):
    """iBLEU (Sun and Zhou 2012): α·BLEU against the reference − (1−α)·BLEU against the source, per line."""

    name, header, needs_sources = "ibleu", "iBLEU", True
    signature = f"ibleu:{metrics.IBLEU_ALPHA}"
    legend = f"iBLEU = {metrics.IBLEU_ALPHA}·BLEU − {round(1 - metrics.IBLEU_ALPHA, 6):g}·BLEU against the source"

    def line_scores(self, hyps, refs, srcs, earlier):
        bleu = earlier["bleu"]  # BLEU against the reference: already scored
        return [metrics.ibleu(b, metrics.sentence_bleu(h.stats, s.stats)) for b, h, s in zip(bleu, hyps, srcs)]


class BERTScore(Metric):
    """Mean BERTScore F1, computed as the official evaluation does (``bert_score.score``); optional."""

    name, header = "bertscore", "BERTScore"

    def __init__(self, model: str):
        self.model = model
        self.signature = f"bertscore:{model}"

    def line_scores(self, hyps, refs, srcs, earlier):
        try:
            import bert_score
        except ImportError:
            raise DiffuseqError("BERTScore needs the optional extra: pip install 'diffuseq-cli[bertscore]'") from None
        _, _, f1 = bert_score.score([h.text for h in hyps], [r.text for r in refs], model_type=self.model,
                                    lang="en", verbose=False)
        return [float(v) for v in f1.tolist()]

    def aggregate(self, values):
        """The float32 mean of the F1s, as the official evaluation takes it (``f1.mean()``)."""
        import torch

        return float(torch.tensor(values, dtype=torch.float32).mean())


BLEU = _Sentence("bleu", "BLEU", lambda h, r, s: metrics.sentence_bleu(h.stats, r.stats), signature="bleu:nltk-s4")
ROUGE_L = _Sentence("rouge_l", "ROUGE-L", lambda h, r, s: metrics.rouge_l(h.rouge, r.rouge), signature="rougeL:lcs-lower")
DIST_1 = _Sentence("dist_1", "dist-1", lambda h, r, s: metrics.distinct_from_stats([h.stats], 1), signature="dist:1")
AVG_LEN = _Sentence("avg_len", "avg len", lambda h, r, s: metrics.avg_len(h.text), fmt=".2f")
REPEAT = _Sentence("repeat", "repeats", lambda h, r, s: metrics.repeats_word(h.text), fmt=".1%",
                   legend="repeats: lines with a word repeated immediately")
COPY = _Sentence("copy", "copies", lambda h, r, s: metrics.same_words(h.text, s.text), fmt=".1%", needs_sources=True,
                 legend="copies: lines equal to their source")

# Every report's columns, in order (those that need sources only when sources are given).
METRICS: tuple[Metric, ...] = (BLEU, ROUGE_L, DIST_1, AVG_LEN, REPEAT, IBLEU(), COPY)


def active_metrics(sources: bool, bertscore_model: str | None = None) -> list[Metric]:
    chosen = [m for m in METRICS if sources or not m.needs_sources]
    return chosen + ([BERTScore(bertscore_model)] if bertscore_model else [])


def score_lines(chosen: Sequence[Metric], hyps: Sequence[Line], refs: Sequence[Line],
                srcs: Sequence[Line] | None) -> dict[str, list[float]]:
    """Every chosen metric's per-line values for one column of hypotheses."""
    done: dict[str, list[float]] = {}
    for metric in chosen:
        done[metric.name] = metric.line_scores(hyps, refs, srcs, done)
    return done


def signature(chosen: Sequence[Metric], samples: int, mbr: str | None = None) -> str:
    """The settings behind a report's numbers, sacrebleu-style, e.g.
    ``diffuseq-eval|bleu:nltk-s4|rougeL:lcs-lower|dist:1|n:5|v:0.1.0``: the standard metrics'
    settings, the samples per source, MBR's utility, then the optional metrics' settings."""
    standard = [m.signature for m in chosen if m.signature and m in METRICS and not m.needs_sources]
    optional = ([m.signature for m in chosen if isinstance(m, BERTScore)]
                + [m.signature for m in chosen if m.signature and m.needs_sources])
    parts = ["diffuseq-eval", *standard, f"n:{samples}", *([f"mbr:{mbr}"] if mbr else []), *optional,
             f"v:{__version__}"]
    return "|".join(parts)
