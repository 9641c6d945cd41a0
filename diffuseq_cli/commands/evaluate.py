"""`diffuseq evaluate`."""

import typer


def evaluate():
    """(not yet implemented)"""
    raise typer.Exit(1)
