"""The ``diffuseq`` command: a thin Typer front over the library.

Importing this module must stay cheap (no torch): each command imports what it
needs inside its body. Library errors become a red one-line message here, in
one place; ``--debug`` shows the traceback instead.
"""

import os
import re
import sys
from typing import Annotated, Optional

import typer

from . import __version__
from .errors import DiffuseqError, FieldError, at_least
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
        Optional[int], typer.Option("--threads", help="CPU threads per process (default: torch's, with a short spin-then-sleep wait that stays fast when other jobs share the cores).", show_default=False)
    ] = None,
):
    """DiffuSeq: train, generate, rerank and evaluate seq2seq diffusion models."""
    global _DEBUG
    _DEBUG = debug or bool(os.environ.get("DIFFUSEQ_DEBUG"))
    at_least("threads", threads)
    configure_threads(threads)


from .commands import convert as _convert  # noqa: E402
from .commands import evaluate as _evaluate  # noqa: E402
from .commands import generate as _generate  # noqa: E402
from .commands import rerank as _rerank  # noqa: E402
from .commands import train as _train  # noqa: E402

app.command("train", add_help_option=False)(_train.train)
app.command("generate", add_help_option=False)(_generate.generate)
app.command("rerank", add_help_option=False)(_rerank.rerank)
app.command("evaluate", add_help_option=False)(_evaluate.evaluate)
app.command("convert", add_help_option=False)(_convert.convert)


def _error(message: str) -> None:
    from .commands.display import console

    console().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def _flag(param) -> str | None:
    """How the user wrote a parameter: its long flag (``--format``), or an argument's name (``FILE``)."""
    opts = list(getattr(param, "opts", None) or ())
    if not opts:
        return None
    if getattr(param, "param_type_name", "") == "argument":
        return (getattr(param, "metavar", None) or opts[0]).upper()
    return max(opts, key=len)


def parser_message(exc) -> str:
    """A command-line parsing error in the wording of the library's own errors (``--format must be
    one of text, jsonl, got 'xml'``); wordings it does not know keep their text, in lower case."""
    flag = _flag(getattr(exc, "param", None))
    raw = str(getattr(exc, "message", "") or "").strip()
    raw = re.sub(r"^Value error, ", "", raw)  # how the parser wraps a ValueError
    choice = re.fullmatch(r"'(?P<value>.*)' is not one of (?P<choices>.*?)\.?", raw)
    if flag and choice:
        names = ", ".join(c.strip().strip("'") for c in choice["choices"].split(","))
        return f"{flag} must be one of {names}, got '{choice['value']}'"
    kind = re.fullmatch(r"Input should be (?P<kind>[^,]*)(,.*)?", raw)
    if flag and kind:
        return f"{flag} must be {kind['kind']}"
    text = exc.format_message().strip().rstrip(".")
    text = text[:1].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    where = f"{ctx.command_path} --help" if ctx is not None else "diffuseq --help"
    return f"{text}; see '{where}'"


def _parser_error(exc) -> bool:
    """Typer's (vendored click's) exceptions for a command line it could not parse; duck-typed,
    so that no private module of Typer is imported."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and map failures to exit codes (0 ok, 1 runtime, 2 usage).

    Every error, the parser's too, is one line in one wording: ``error: --steps must be at least
    1, got 0``.
    """
    try:
        code = app(args=argv, prog_name="diffuseq", standalone_mode=False)
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
    except Exception as exc:
        if not _parser_error(exc):
            raise
        message = exc.format_message()
        if message.startswith("Usage:"):  # `diffuseq` alone: the help, as asked
            print(message, file=sys.stderr)
        else:
            _error(parser_message(exc).replace("[", "\\["))
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
