"""A training run folder: numbered checkpoints (each a complete model folder plus resume state), ``latest``.

```
RUN/config.json        the resolved TrainConfig (and the resolved model configuration)
RUN/tokenizer.json     the run's tokenizer
RUN/metrics.jsonl      one JSON object per logged step
RUN/cache/             tokenized data (and a trained BPE), keyed by content hash
RUN/checkpoints/step_00001000/   config.json model.safetensors tokenizer.json README.md train_state.pt .complete
RUN/latest -> checkpoints/step_00001000
```
A checkpoint counts only once its ``.complete`` marker exists (written last, then the
folder is renamed into place), so a write cut off in the middle is never taken as latest:
``latest_checkpoint`` scans for complete folders and does not trust the ``latest`` link.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from .folder import atomic_dir, is_complete, write_model_folder
from .pt_files import load_tensors

STATE = "train_state.pt"
METRICS = "metrics.jsonl"
_STEP_DIR = re.compile(r"step_(\d+)")


def checkpoint_dir(run: Path, step: int) -> Path:
    return Path(run) / "checkpoints" / f"step_{step:08d}"


def _step_of(path: Path) -> int | None:
    m = _STEP_DIR.fullmatch(path.name)
    return int(m.group(1)) if m else None


def complete_checkpoints(run: Path) -> list[Path]:
    """Finished checkpoints, oldest first: ``step_N`` folders with ``.complete``, weights and train state."""
    root = Path(run) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _step_of(p) is not None and is_complete(p) and (p / STATE).exists()]
    return sorted(found, key=_step_of)


def latest_checkpoint(run: Path) -> Path | None:
    ckpts = complete_checkpoints(run)
    return ckpts[-1] if ckpts else None


def remove_stale(run: Path) -> None:
    """Delete the leftovers of writes or deletions cut off by a crash (``.step_*.tmp-*``, ``.step_*.del-*``)."""
    root = Path(run) / "checkpoints"
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(".step_") and (".tmp-" in p.name or ".del-" in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)
    for p in Path(run).glob(".latest.tmp-*"):
        p.unlink(missing_ok=True)


def _point_latest(run: Path, target: Path) -> None:
    link = run / "latest"
    tmp_link = run / f".latest.tmp-{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, run), tmp_link)
    os.replace(tmp_link, link)


def save_checkpoint(run: Path, step: int, folder_config, ema_state: dict, tokenizer, card: str, train_state: dict, keep: int) -> Path:
    """Atomically write checkpoint ``step``, point ``latest`` at it, and prune old ones (``keep`` > 0)."""
    run = Path(run)
    final = checkpoint_dir(run, step)
    with atomic_dir(final) as tmp:
        write_model_folder(tmp, folder_config, ema_state, tokenizer, card)
        torch.save(train_state, tmp / STATE)
    _point_latest(run, final)
    if keep > 0:
        for old in complete_checkpoints(run)[:-keep]:
            # Rename first (atomic), so a crash during the deletion never leaves a half-deleted step_N.
            doomed = old.parent / f".{old.name}.del-{os.getpid()}"
            try:
                os.replace(old, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
    return final


def load_train_state(ckpt: Path) -> dict:
    """What resume needs, saved by ``save_checkpoint``; read as tensors only, like every ``.pt`` file."""
    return load_tensors(Path(ckpt) / STATE, "not a training state that diffuseq wrote")


def append_metrics(run: Path, record: dict) -> None:
    with open(Path(run) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run: Path) -> list[dict]:
    path = Path(run) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut off by a crash
    return records


def truncate_metrics(run: Path, step: int) -> None:
    """Drop records after ``step`` (logged by a run that died before its next checkpoint), atomically."""
    path = Path(run) / METRICS
    if not path.exists():
        return
    keep = [r for r in read_metrics(run) if r.get("step", 0) <= step]
    tmp = path.with_name(f".{METRICS}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
