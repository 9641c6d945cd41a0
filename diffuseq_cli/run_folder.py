"""A training run folder: numbered checkpoints (each a complete model folder plus resume state), ``latest``.

```
RUN/config.json        the resolved TrainConfig
RUN/tokenizer.json     the run's tokenizer
RUN/metrics.jsonl      one JSON object per logged step
RUN/cache/             tokenized data, keyed by content hash
RUN/checkpoints/step_00001000/   config.json model.safetensors tokenizer.json README.md train_state.pt .complete
RUN/latest -> checkpoints/step_00001000
```
A checkpoint counts only once its ``.complete`` marker exists (written last, then the
folder is renamed into place), so a write cut off in the middle is never taken as latest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from .checkpoint import atomic_dir, is_complete, write_model_folder

STATE = "train_state.pt"


def checkpoint_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:08d}"


def complete_checkpoints(run: Path) -> list[Path]:
    root = Path(run) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step_") and is_complete(p) and (p / STATE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(run: Path) -> Path | None:
    ckpts = complete_checkpoints(run)
    return ckpts[-1] if ckpts else None


def save_checkpoint(run: Path, step: int, folder_config, ema_state: dict, tokenizer, card: str, train_state: dict, keep: int) -> Path:
    """Atomically write checkpoint ``step``, point ``latest`` at it, and prune old ones."""
    final = checkpoint_dir(run, step)
    with atomic_dir(final) as tmp:
        write_model_folder(tmp, folder_config, ema_state, tokenizer, card)
        torch.save(train_state, tmp / STATE)
    link = run / "latest"
    tmp_link = run / f".latest.tmp-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(os.path.relpath(final, run), tmp_link)
    os.replace(tmp_link, link)
    if keep > 0:
        for old in complete_checkpoints(run)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_train_state(ckpt: Path) -> dict:
    return torch.load(ckpt / STATE, map_location="cpu", weights_only=True)


def append_metrics(run: Path, record: dict) -> None:
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
