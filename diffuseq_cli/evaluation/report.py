"""The paper's evaluation as one report: a row per file of the metrics in ``columns``
(BLEU, ROUGE-L, dist-1, length, ...); self-BLEU, div-4, MBR.

Numbers follow the official DiffuSeq evaluation (DESIGN.md section 4): lines
are stripped, each metric is averaged over lines (files) or sources (self-BLEU,
div-4); the MBR row scores the candidate chosen for each source by summed
sentence BLEU. Each line is prepared once and its scores are reused: the
per-file scores feed the MBR row, and one BLEU matrix per source feeds both
self-BLEU (its upper triangle) and MBR (its row sums).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, UsageError, at_least
from ..textio import display_name, read_lines
from . import mbr as mbr_lib
from . import metrics
from .columns import BERTScore, METRICS, Metric, active_metrics, mean, prepare_lines, score_lines, signature

DEFAULT_BERTSCORE_MODEL = "microsoft/deberta-xlarge-mnli"


@dataclass(frozen=True)
class Score:
    """One row of the report: a predictions file (or the MBR choice, or the copied source).

    ``values`` maps each metric's name to its corpus figure; ``row.bleu`` reads ``values["bleu"]``
    (None for a known metric the report did not compute).
    """

    name: str
    values: dict[str, float]

    def __getattr__(self, key: str):
        if key in ("name", "values") or key.startswith("__"):
            raise AttributeError(key)
        if key in self.values:
            return self.values[key]
        if key in _KNOWN:
            return None
        raise AttributeError(f"{type(self).__name__} has no metric {key!r}")

    def to_dict(self) -> dict:
        return {"name": self.name, **self.values}

    @classmethod
    def of(cls, name: str, chosen: Sequence[Metric], per_line: dict[str, list[float]]) -> "Score":
        return cls(name, {m.name: m.aggregate(per_line[m.name]) for m in chosen})


_KNOWN = {m.name for m in METRICS} | {BERTScore.name}


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
    metrics: tuple[Metric, ...] = ()  # the columns, in order

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

    ``preds`` holds one list per predictions file, each as long as ``refs``. Every row has
    the metrics of ``columns.METRICS``; ``sources`` adds the copy-the-source row and,
    on every row, the metrics that compare with the source (iBLEU, copies); ``bertscore_model``
    adds BERTScore F1 (the optional ``bertscore`` extra). With two or more samples per source
    the report adds self-BLEU and div-4; ``mbr=True`` adds the row of the MBR choice.
    ``on_progress(done, total)`` reports sources done.
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

    chosen = active_metrics(sources is not None, bertscore_model)
    ref_lines = prepare_lines(refs)
    col_lines = [prepare_lines(column) for column in columns]
    src_lines = prepare_lines([line.strip() for line in sources]) if sources is not None else None
    per_line = [score_lines(chosen, c, ref_lines, src_lines) for c in col_lines]
    files = [Score.of(name, chosen, lines) for lines, name in zip(per_line, names)]

    self_bleu = div_4 = mbr_row = choice = None
    if len(columns) > 1 or mbr:
        self_bleu, div_4, choice = _candidate_sets([[x.stats for x in c] for c in col_lines], mbr, on_progress)
        if len(columns) == 1:
            self_bleu = div_4 = None
        if mbr:  # line i taken from column choice[i]: nothing is scored again
            picked = {m.name: [per_line[k][m.name][i] for i, k in enumerate(choice)] for m in chosen}
            mbr_row = Score.of("mbr", chosen, picked)

    source_row = None
    if src_lines is not None:
        source_row = Score.of("source", chosen, score_lines(chosen, src_lines, ref_lines, src_lines))
    sig = signature(chosen, len(columns), mbr="bleu" if mbr else None)
    return Report(files, len(refs), len(columns), sig, self_bleu, div_4, mbr_row, choice, source_row, tuple(chosen))


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
        self_bleus.append(mean([matrix[a][b] for a in range(k) for b in range(a + 1, k)]))
        divs.append(metrics.distinct_from_stats(stats, 4))
        if mbr:
            choice.append(mbr_lib.select_from_matrix(matrix).index)
        if on_progress is not None:
            on_progress(i + 1, total)
    return mean(self_bleus), mean(divs), choice if mbr else None


def load_inputs(
    pred_paths: Sequence[str | Path], refs_path: str | Path, *, per_line: int = 1, sources_path=None
) -> tuple[list[list[str]], list[str], list[str], list[str] | None]:
    """Read predictions, references and sources; check that their lines line up.

    ``per_line = K`` means each predictions file holds K consecutive lines per
    reference (sample 1..K of reference 1, then of reference 2, ...), so it
    contributes K columns. Returns ``(columns, names, refs, sources)``.
    """
    at_least("per_line", per_line)
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
