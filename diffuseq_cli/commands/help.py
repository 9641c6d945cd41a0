"""Every command's ``--help``: Typer's text, with the usage line and arguments written as
command-line tools write them (``FILE...``, not ``{FILE}...`` nor ``FILE <list[Path]>``).

Typer (0.29) puts required arguments in braces and shows an argument's Python type; neither
means anything to a person at a shell. Only the public API is used: each command declares
``--help`` itself (``HelpOpt``; registered with ``add_help_option=False``), and its callback
tidies the text that ``typer.Context.get_help`` renders.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer


def tidy_help(text: str) -> str:
    """``{NAME}`` in the usage line becomes ``NAME``; in the Arguments section, ``name <type>``
    becomes ``NAME`` and ``name <list[type]>`` becomes ``NAME...`` (padded, so the column of
    descriptions stays aligned)."""
    lines = text.split("\n")
    section = None
    for i, line in enumerate(lines):
        if line.startswith("Usage:"):
            lines[i] = re.sub(r"\{([^{}\s]+)\}", lambda m: m[1].upper(), line)
        elif line and not line.startswith(" "):
            section = line.rstrip(":")
        elif section == "Arguments":
            lines[i] = re.sub(r"^(\s+)(\S+) <(list\[)?[^<>\s]*\]?>",
                              lambda m: m[1] + (m[2].upper() + ("..." if m[3] else "")).ljust(len(m[0]) - len(m[1])),
                              line)
    return "\n".join(lines)


def _show_help(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(tidy_help(ctx.get_help()))
        raise typer.Exit()


HelpOpt = Annotated[
    bool,
    typer.Option("--help", is_eager=True, expose_value=False, callback=_show_help, help="Show this message and exit."),
]
