"""The ``diffuseq`` command: a thin Typer front over the library.

Importing this module must stay cheap (no torch): each command imports what it
needs inside its body. Library errors become a red one-line message here, in
one place; ``--debug`` shows the traceback instead.
"""

import os
import sys
from typing import Annotated, Optional

import typer

from . import __version__
from .errors import DiffuseqError, FieldError
from .threads import configure as configure_threads

app = typer.Typer(
    name="diffuseq",
    help="Sequence-to-sequence text generation with DiffuSeq (continuous diffusion).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain click help: clean at 80 columns, no <bool> placeholders
)

_DEBUG = False


def _version(value: bool):
    if value:
        typer.echo(f"diffuseq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    threads: Annotated[
        Optional[int], typer.Option("--threads", min=1, help="CPU threads per process (default: torch's, with a short spin-then-sleep wait that stays fast when other jobs share the cores).", show_default=False)
    ] = None,
):
    """DiffuSeq: train, generate, rerank and evaluate seq2seq diffusion models."""
    global _DEBUG
    _DEBUG = debug or bool(os.environ.get("DIFFUSEQ_DEBUG"))
    configure_threads(threads)


from .commands import convert as _convert  # noqa: E402
from .commands import evaluate as _evaluate  # noqa: E402
from .commands import generate as _generate  # noqa: E402
from .commands import rerank as _rerank  # noqa: E402
from .commands import train as _train  # noqa: E402

app.command("train")(_train.train)
app.command("generate")(_generate.generate)
app.command("rerank")(_rerank.rerank)
app.command("evaluate")(_evaluate.evaluate)
app.command("convert")(_convert.convert)


def _error(message: str) -> None:
    from .commands.display import console

    console().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and map failures to exit codes (0 ok, 1 runtime, 2 usage)."""
    try:
        app(args=argv, prog_name="diffuseq")
    except BrokenPipeError:  # `diffuseq generate ... | head -1`: the reader left; end quietly
        from .commands.display import silence_stdout

        silence_stdout()
        sys.exit(0)
    except DiffuseqError as exc:
        if _DEBUG:
            raise
        message = str(exc)
        if isinstance(exc, FieldError):  # the library names settings; here they are flags
            from .commands.options import flag_name

            message = exc.render(flag_name)
        _error(message.replace("[", "\\["))
        if getattr(exc, "note", None):  # what the user still has, and how to go on
            print(exc.note, file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(130)
