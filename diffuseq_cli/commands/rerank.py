"""`diffuseq rerank`: MBR selection over candidate sets that already exist."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .help import HelpOpt
from .options import InputFormat, MBRMetric, OutputFormat, OutputOpt


FilesArg = Annotated[
    list[str],
    typer.Argument(help="Candidate files: one per sample (line-aligned), one with -n K lines per source, "
                   "or JSONL from generate. '-' reads stdin.", show_default=False, metavar="CANDIDATES"),
]
PerLineOpt = Annotated[
    Optional[int], typer.Option("--num-samples", "-n", help="K consecutive lines per source in one text file.")
]
MetricOpt = Annotated[MBRMetric, typer.Option("--metric", "-m", help="Utility between candidates.")]
NbestOpt = Annotated[int, typer.Option("--nbest", help="Print the N best candidates per source, best first.")]
FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="text (N lines per source) or jsonl (one object per source).")
]
InputFormatOpt = Annotated[
    InputFormat, typer.Option("--input-format", help="auto: JSONL when the first line starts with '{'.")
]


def rerank(
    files: FilesArg,
    num_samples: PerLineOpt = None,
    metric: MetricOpt = MBRMetric.bleu,
    nbest: NbestOpt = 1,
    fmt: FormatOpt = OutputFormat.text,
    input_format: InputFormatOpt = InputFormat.auto,
    output: OutputOpt = None,
    show_help: HelpOpt = False,
):
    """Pick, for each source, the candidate that agrees most with the others (minimum Bayes risk).

    A candidate's expected utility is the sum of its sentence BLEU (or --metric) against the
    other candidates of the same source; the highest wins, the first on ties. Output keeps input order.

    Examples:

    \b
      diffuseq rerank seed0.txt seed1.txt seed2.txt > best.txt
      diffuseq rerank candidates.txt -n 10 --nbest 3 > top3.txt
      diffuseq rerank generated.jsonl --format jsonl -o ranked.jsonl
    """
    from ..errors import DataError
    from ..evaluation.rerank import read_candidate_sets, rerank as run
    from ..textio import atomic_output, check_writable, rereadable

    check_writable(output, inputs=files)
    if all(rereadable(f) for f in files):
        # Regular files are read through once first: a bad line anywhere fails now, before the
        # first result reaches the output (a reader of stdout gets nothing partial). Streams can
        # only be checked as they are read.
        for _ in read_candidate_sets(files, per_line=num_samples, input_format=input_format.value):
            pass
    sets = read_candidate_sets(files, per_line=num_samples, input_format=input_format.value)
    results = run(sets, metric=metric.value, nbest=nbest)
    with atomic_output(output) as out:
        for number, result in enumerate(results, start=1):
            if fmt is OutputFormat.jsonl:
                out.write(result.to_json(nbest) + "\n")
                continue
            for line in result.nbest(nbest):
                if "\n" in line or "\r" in line:
                    raise DataError(f"source {number}: a candidate contains a line break; use --format jsonl")
                out.write(line + "\n")
