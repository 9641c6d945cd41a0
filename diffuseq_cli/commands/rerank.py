"""`diffuseq rerank`."""

import typer


def rerank():
    """(not yet implemented)"""
    raise typer.Exit(1)
