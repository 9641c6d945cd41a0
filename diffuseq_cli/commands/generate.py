"""`diffuseq generate`."""

import typer


def generate():
    """(not yet implemented)"""
    raise typer.Exit(1)
