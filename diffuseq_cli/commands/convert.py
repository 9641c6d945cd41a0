"""`diffuseq convert`."""

import typer


def convert():
    """(not yet implemented)"""
    raise typer.Exit(1)
