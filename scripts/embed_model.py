"""Copy a training checkpoint into the package as the embedded paraphrase model (fp16 weights).

    python scripts/embed_model.py runs/exp-fast/latest diffuseq_cli/models/paraphrase

The model card (README.md) is written by hand with the measured scores; this keeps an
existing one. Weights are stored in fp16 (half the size) and loaded back as fp32.
"""

import sys
from pathlib import Path

import torch

from diffuseq_cli.checkpoint import CARD, load_model_folder, write_model_folder


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    loaded = load_model_folder(src)
    dst.mkdir(parents=True, exist_ok=True)
    card = (dst / CARD).read_text() if (dst / CARD).exists() else (src / CARD).read_text()
    write_model_folder(dst, loaded.config, loaded.model.state_dict(), loaded.tokenizer, card, dtype=torch.float16)
    print(f"{dst}: {sum(p.stat().st_size for p in dst.iterdir()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
