"""`diffuseq evaluate`: the paper's metrics for prediction files against references."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .display import Bar, console, on_terminal
from .help import HelpOpt
from .options import QuietOpt


class Format(str, Enum):
    table = "table"
    json = "json"
    text = "text"


FilesArg = Annotated[
    list[Path],
    typer.Argument(help="Prediction files, then the references file last (unless --refs is given).",
                   show_default=False, metavar="FILE"),
]
RefsOpt = Annotated[Optional[Path], typer.Option("--refs", "-r", help="References file; then every FILE is predictions.")]
PerLineOpt = Annotated[
    int, typer.Option("--num-samples", "-n", help="Each predictions file holds K consecutive lines per reference.")
]
MbrOpt = Annotated[bool, typer.Option("--mbr", help="Add a row for the MBR choice (summed sentence BLEU) among the samples.")]
SourcesOpt = Annotated[Optional[Path], typer.Option("--sources", "-s", help="Source file: add the copy-the-source baseline row, iBLEU and the share of outputs equal to their source.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table (rich, on stderr), json or text (on stdout).")]
BertOpt = Annotated[bool, typer.Option("--bertscore", help="Add BERTScore F1 (needs the 'bertscore' extra).")]
BertModelOpt = Annotated[Optional[str], typer.Option("--bertscore-model", help="BERTScore model (implies --bertscore).")]


def evaluate(
    files: FilesArg,
    refs: RefsOpt = None,
    num_samples: PerLineOpt = 1,
    mbr: MbrOpt = False,
    sources: SourcesOpt = None,
    fmt: FormatOpt = Format.table,
    bertscore: BertOpt = False,
    bertscore_model: BertModelOpt = None,
    quiet: QuietOpt = False,
    show_help: HelpOpt = False,
):
    """Score predictions the way the DiffuSeq paper does: BLEU, ROUGE-L, dist-1, length,
    self-BLEU and div-4 over several samples, and the MBR choice.

    Every line is one hypothesis (an empty line is an empty hypothesis), aligned with the
    references line by line. Several prediction files (or -n K) are samples of one source.

    Examples:

    \b
      diffuseq evaluate preds.txt refs.txt
      diffuseq evaluate s0.txt s1.txt s2.txt refs.txt --mbr --sources src.txt
      diffuseq evaluate samples.txt refs.txt -n 10 --mbr -f json | jq .mbr.bleu
    """
    from ..errors import UsageError
    from ..evaluation.report import DEFAULT_BERTSCORE_MODEL, evaluate as run, load_inputs

    preds = list(files)
    if refs is None:
        if len(preds) < 2:
            raise UsageError("give at least one predictions file and the references file (or --refs FILE)")
        refs = preds.pop()
    columns, names, ref_lines, source_lines = load_inputs(preds, refs, per_line=num_samples, sources_path=sources)
    model = bertscore_model or (DEFAULT_BERTSCORE_MODEL if bertscore else None)
    with Bar((), enabled=on_terminal(quiet), description="scoring", total=None) as bar:
        on_progress = (lambda done, total: bar.update(completed=done, total=total)) if bar.progress else None
        report = run(columns, ref_lines, names=names, sources=source_lines, mbr=mbr,
                     bertscore_model=model, on_progress=on_progress)
    if fmt is Format.json:
        typer.echo(json.dumps(report.to_dict()))
    elif fmt is Format.text:
        typer.echo("\n".join(f"{key} = {value}" for key, value in _text_items(report)))
    else:
        _table(report)


def _text_items(report):
    """``key = value`` pairs: ``metric[row]`` for each row, then the set-level numbers."""
    for row in report.rows():
        for key, value in row.values.items():
            yield f"{key}[{row.name}]", value
    if report.self_bleu is not None:
        yield "self_bleu", report.self_bleu
        yield "div_4", report.div_4
    yield "signature", report.signature


def _table(report) -> None:
    from rich.table import Table

    table = Table(title=f"{report.lines} lines, {report.samples} sample(s) per source")
    table.add_column("", justify="left", overflow="fold")  # a long file name wraps; it is never cut
    for metric in report.metrics:
        table.add_column(metric.header, justify="right")
    for i, row in enumerate(report.rows()):
        cells = [format(row.values[m.name], m.fmt) for m in report.metrics]
        table.add_row(row.name, *cells, end_section=i == len(report.files) - 1)
    out = console()
    out.print(table)
    if report.self_bleu is not None:
        out.print(f"self-BLEU {report.self_bleu:.4f}   div-4 {report.div_4:.4f}")
    legend = "; ".join(m.legend for m in report.metrics if m.legend)
    if legend:
        out.print(f"[dim]{legend}[/]")
    out.print(f"[dim]{report.signature}[/]", soft_wrap=True)  # one line, to paste whole
