"""The paper's evaluation as one report: per-file BLEU, ROUGE-L, dist-1, length; self-BLEU, div-4, MBR.

Numbers follow the official DiffuSeq evaluation (DESIGN.md section 4): lines
are stripped, each metric is averaged over lines (files) or sources (self-BLEU,
div-4); the MBR row scores the candidate chosen for each source by summed
sentence BLEU. Each line is prepared once and its scores are reused: the
per-file scores feed the MBR row, and one BLEU matrix per source feeds both
self-BLEU (its upper triangle) and MBR (its row sums).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import mbr as mbr_lib
from . import metrics
from .errors import DataError, DiffuseqError, UsageError
from .textio import display_name, read_lines

DEFAULT_BERTSCORE_MODEL = "microsoft/deberta-xlarge-mnli"


@dataclass(frozen=True)
class Score:
    """One row of the report: a predictions file (or the MBR choice, or the copied source)."""

    name: str
    bleu: float
    rouge_l: float
    dist_1: float
    avg_len: float
    repeat: float = 0.0  # share of lines that repeat a word immediately ("to to"): stutter
    ibleu: float | None = None  # with sources: 0.8·BLEU(ref) - 0.2·BLEU(source), per line, averaged
    copy: float | None = None  # with sources: share of lines identical to their source (whitespace-normalised)
    bertscore: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Report:
    """Everything ``diffuseq evaluate`` prints; ``to_dict`` gives the stable JSON layout."""

    files: list[Score]
    lines: int
    samples: int
    signature: str
    self_bleu: float | None = None
    div_4: float | None = None
    mbr: Score | None = None
    mbr_choice: list[int] | None = None
    source: Score | None = None

    def rows(self) -> list[Score]:
        """Files, then the MBR row, then the copy-the-source baseline."""
        return self.files + [row for row in (self.mbr, self.source) if row is not None]

    def to_dict(self) -> dict:
        return {
            "signature": self.signature,
            "lines": self.lines,
            "samples": self.samples,
            "files": [row.to_dict() for row in self.files],
            "self_bleu": self.self_bleu,
            "div_4": self.div_4,
            "mbr": self.mbr.to_dict() if self.mbr else None,
            "mbr_choice": self.mbr_choice,
            "source": self.source.to_dict() if self.source else None,
        }


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


@dataclass
class _LineScores:
    """Per-line values of one hypothesis column against the references."""

    bleu: list[float]
    rouge_l: list[float]
    dist_1: list[float]
    length: list[int]
    repeat: list[bool]
    ibleu: list[float] | None = None
    copy: list[bool] | None = None

    def row(self, name: str) -> Score:
        opt = {f: None if getattr(self, f) is None else _mean(getattr(self, f)) for f in ("ibleu", "copy")}
        return Score(name, _mean(self.bleu), _mean(self.rouge_l), _mean(self.dist_1), _mean(self.length),
                     _mean(self.repeat), **opt)

    @classmethod
    def chosen(cls, columns: Sequence[_LineScores], choice: Sequence[int]) -> _LineScores:
        """Line i taken from column ``choice[i]``: the MBR row, without scoring anything again."""
        def pick(f):
            if getattr(columns[0], f) is None:
                return None
            return [getattr(columns[k], f)[i] for i, k in enumerate(choice)]

        return cls(*(pick(f) for f in ("bleu", "rouge_l", "dist_1", "length", "repeat", "ibleu", "copy")))


def _score_lines(hyps: Sequence[str], hyp_stats, ref_stats, ref_tokens, sources=None, src_stats=None) -> _LineScores:
    bleu = [metrics.sentence_bleu(h, r) for h, r in zip(hyp_stats, ref_stats)]
    scores = _LineScores(
        bleu,
        [metrics.rouge_l(metrics.rouge_tokens(h), r) for h, r in zip(hyps, ref_tokens)],
        [metrics.distinct_from_stats([s], 1) for s in hyp_stats],
        [metrics.avg_len(h) for h in hyps],
        [metrics.repeats_word(h) for h in hyps],
    )
    if sources is not None:
        scores.ibleu = [metrics.ibleu(b, metrics.sentence_bleu(h, s)) for b, h, s in zip(bleu, hyp_stats, src_stats)]
        scores.copy = [metrics.same_words(h, s) for h, s in zip(hyps, sources)]
    return scores


def evaluate(
    preds: Sequence[Sequence[str]],
    refs: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    mbr: bool = False,
    bertscore_model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Score ``preds[k][i]`` (sample k of source i) against ``refs[i]``.

    ``preds`` holds one list per predictions file, each as long as ``refs``.
    With two or more samples per source the report adds self-BLEU and div-4;
    ``mbr=True`` adds the row of the MBR choice; ``sources`` adds the
    copy-the-source baseline and, on every row, iBLEU and the share of lines equal to their
    source; every row has the share of lines repeating a word immediately; ``bertscore_model`` adds BERTScore F1 (needs the
    optional ``bertscore`` extra). ``on_progress(done, total)`` reports sources done.
    """
    if not preds:
        raise UsageError("no predictions to evaluate")
    names = list(names) if names is not None else [f"preds{k}" for k in range(len(preds))]
    refs = [line.strip() for line in refs]
    columns = [[line.strip() for line in column] for column in preds]
    for name, column in zip(names, columns):
        if len(column) != len(refs):
            raise DataError(f"{name} has {len(column)} lines but the references have {len(refs)}")
    if sources is not None and len(sources) != len(refs):
        raise DataError(f"the sources have {len(sources)} lines but the references have {len(refs)}")

    ref_stats = [metrics.prepare(r) for r in refs]
    ref_tokens = [metrics.rouge_tokens(r) for r in refs]
    col_stats = [[metrics.prepare(h) for h in column] for column in columns]
    if sources is not None:
        sources = [line.strip() for line in sources]
        src_stats = [metrics.prepare(s) for s in sources]
    else:
        src_stats = None
    per_line = [_score_lines(c, s, ref_stats, ref_tokens, sources, src_stats) for c, s in zip(columns, col_stats)]
    files = [lines.row(name) for lines, name in zip(per_line, names)]

    self_bleu = div_4 = mbr_row = choice = None
    if len(columns) > 1 or mbr:
        self_bleu, div_4, choice = _candidate_sets(col_stats, mbr, on_progress)
        if len(columns) == 1:
            self_bleu = div_4 = None
        if mbr:
            mbr_row = _LineScores.chosen(per_line, choice).row("mbr")

    source_row = None
    if sources is not None:
        source_row = _score_lines(sources, src_stats, ref_stats, ref_tokens, sources, src_stats).row("source")

    if bertscore_model:
        files = [_with_bertscore(row, bertscore_model, column, refs) for row, column in zip(files, columns)]
        if mbr_row is not None:
            mbr_row = _with_bertscore(mbr_row, bertscore_model, [columns[k][i] for i, k in enumerate(choice)], refs)
        if source_row is not None:
            source_row = _with_bertscore(source_row, bertscore_model, sources, refs)
    signature = metrics.signature(len(columns), mbr="bleu" if mbr else None, bertscore=bertscore_model,
                                  ibleu=sources is not None)
    return Report(files, len(refs), len(columns), signature, self_bleu, div_4, mbr_row, choice, source_row)


def _candidate_sets(col_stats, mbr: bool, on_progress) -> tuple[float, float, list[int] | None]:
    """Self-BLEU and div-4 averaged over sources, and the MBR choices (with ``mbr``).

    One BLEU matrix per source (each unordered pair counted once) serves both
    self-BLEU (pairs i < j, candidate i as hypothesis) and MBR (row sums).
    """
    self_bleus, divs, choice = [], [], []
    total = len(col_stats[0])
    k = len(col_stats)
    for i in range(total):
        stats = [column[i] for column in col_stats]
        matrix = mbr_lib.pair_matrix(stats, metrics.bleu_both)
        self_bleus.append(_mean([matrix[a][b] for a in range(k) for b in range(a + 1, k)]))
        divs.append(metrics.distinct_from_stats(stats, 4))
        if mbr:
            choice.append(mbr_lib.select_from_matrix(matrix).index)
        if on_progress is not None:
            on_progress(i + 1, total)
    return _mean(self_bleus), _mean(divs), choice if mbr else None


def _with_bertscore(row: Score, model: str, hyps: Sequence[str], refs: Sequence[str]) -> Score:
    """``row`` plus the mean BERTScore F1, computed as the official evaluation does (``bert_score.score``)."""
    try:
        import bert_score
    except ImportError:
        raise DiffuseqError("BERTScore needs the optional extra: pip install 'diffuseq-cli[bertscore]'") from None
    _, _, f1 = bert_score.score(list(hyps), list(refs), model_type=model, lang="en", verbose=False)
    return replace(row, bertscore=float(f1.mean()))


def load_inputs(
    pred_paths: Sequence[str | Path], refs_path: str | Path, *, per_line: int = 1, sources_path=None
) -> tuple[list[list[str]], list[str], list[str], list[str] | None]:
    """Read predictions, references and sources; check that their lines line up.

    ``per_line = K`` means each predictions file holds K consecutive lines per
    reference (sample 1..K of reference 1, then of reference 2, ...), so it
    contributes K columns. Returns ``(columns, names, refs, sources)``.
    """
    if per_line < 1:
        raise UsageError(f"-n must be at least 1, got {per_line}")
    refs = read_lines(refs_path)
    if not refs:
        raise DataError(f"{display_name(refs_path)} is empty: no lines to score")
    columns, names = [], []
    for path in pred_paths:
        lines = read_lines(path)
        if len(lines) != len(refs) * per_line:
            expected = f"{len(refs)}" if per_line == 1 else f"{len(refs)} x {per_line} = {len(refs) * per_line}"
            raise DataError(
                f"{display_name(path)} has {len(lines)} lines but {display_name(refs_path)} has {len(refs)}"
                + ("" if per_line == 1 else f" (expected {expected} with -n {per_line})")
            )
        if per_line == 1:
            columns.append(lines)
            names.append(display_name(path))
        else:
            columns.extend(lines[k::per_line] for k in range(per_line))
            names.extend(f"{display_name(path)}#{k + 1}" for k in range(per_line))
    sources = None
    if sources_path is not None:
        sources = read_lines(sources_path)
        if len(sources) != len(refs):
            raise DataError(
                f"{display_name(sources_path)} has {len(sources)} lines but {display_name(refs_path)} has {len(refs)}"
            )
    return columns, names, refs, sources
