"""`diffuseq train`."""

import typer


def train():
    """(not yet implemented)"""
    raise typer.Exit(1)
