"""`diffuseq convert`: an official DiffuSeq checkpoint in, a model folder out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .help import HelpOpt

def convert(
    checkpoint: Annotated[str, typer.Argument(help="Official checkpoint, e.g. ema_0.9999_050000.pt.", metavar="CHECKPOINT")],
    output: Annotated[str, typer.Option("--output", "-o", help="Model folder to write.")],
    args: Annotated[Optional[str], typer.Option("--args", help="training_args.json (default: beside the checkpoint).")] = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", help="vocab.txt or tokenizer.json (default: beside the checkpoint).")] = None,
    heads: Annotated[int, typer.Option("--heads", help="Attention heads (not stored in the checkpoint; bert-base: 12).")] = 12,
    show_help: HelpOpt = False,
):
    """Import a checkpoint of the official DiffuSeq code into a diffuseq model folder.

    Example:

    \b
      diffuseq convert ema_0.9999_050000.pt --tokenizer vocab.txt -o models/qqp
    """
    import warnings

    from ..modelfiles.card import converted_card
    from ..modelfiles.folder import save_model_folder
    from ..modelfiles.official import load_official

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_official(checkpoint, args_path=args, tokenizer_path=tokenizer, num_heads=heads)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    save_model_folder(Path(output), loaded.config, loaded.model, loaded.tokenizer, converted_card(Path(checkpoint).name, loaded.config))
    m = loaded.config.model
    typer.echo(
        f"wrote {output}: {m.num_layers} layers, hidden {m.hidden_size}, d {m.embed_dim}, vocab {m.vocab_size}, "
        f"T {loaded.config.diffusion.steps}",
        err=True,
    )
