"""Copy a training checkpoint into the package as the embedded paraphrase model (fp16 weights).

    python scripts/embed_model.py runs/final/checkpoints/step_00003200 diffuseq_cli/models/paraphrase \
        --lengths 3 --dedup --avoid-copy

The model card (README.md) is written by hand with the measured scores; this keeps an
existing one. With the same folder as source and destination only the decoding defaults change:

    python scripts/embed_model.py diffuseq_cli/models/paraphrase diffuseq_cli/models/paraphrase --sampler dpm++ --steps 5
 Weights are stored in fp16 (half the size) and loaded back as fp32. The decoding
options become the folder's defaults (config.json "decoding"): what `generate` does with this
model unless told otherwise.
"""

import argparse
import dataclasses
from pathlib import Path

import torch

from diffuseq_cli.modelfiles.folder import CARD, load_model_folder, write_config, write_model_folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--lengths", type=int, help="the length beam (default: the checkpoint's)")
    ap.add_argument("--dedup", action=argparse.BooleanOptionalAction, help="collapse repeated words (default: the checkpoint's)")
    ap.add_argument("--avoid-copy", action=argparse.BooleanOptionalAction, help="MBR avoids copies of the source")
    ap.add_argument("--keep-mood", action=argparse.BooleanOptionalAction, help="MBR keeps questions questions, statements statements")
    ap.add_argument("--whole-words", action=argparse.BooleanOptionalAction, help="MBR prefers the fewest made-up words")
    ap.add_argument("--sampler", help="the sampler generate uses unless told (ddim, dpm++, ddpm)")
    ap.add_argument("--steps", type=int, help="its steps unless told: the fewest that lose nothing (docs/benchmarks.md)")
    args = ap.parse_args()
    loaded = load_model_folder(args.src)
    given = {k: v for k, v in dict(lengths=args.lengths, dedup=args.dedup, avoid_copy=args.avoid_copy,
                                   keep_mood=args.keep_mood, whole_words=args.whole_words,
                                   sampler=args.sampler, steps=args.steps).items() if v is not None}
    config = dataclasses.replace(loaded.config, decoding=dataclasses.replace(loaded.config.decoding, **given))
    if args.dst.exists() and args.dst.resolve() == args.src.resolve():  # new decoding defaults: the weights stay
        write_config(args.dst, config)
        print(f"{args.dst}: decoding {config.decoding}")
        return
    args.dst.mkdir(parents=True, exist_ok=True)
    card = (args.dst / CARD).read_text() if (args.dst / CARD).exists() else (args.src / CARD).read_text()
    write_model_folder(args.dst, config, loaded.model.state_dict(), loaded.tokenizer, card, dtype=torch.float16)
    print(f"{args.dst}: {sum(p.stat().st_size for p in args.dst.iterdir()) / 1e6:.1f} MB, decoding {config.decoding}")


if __name__ == "__main__":
    main()
