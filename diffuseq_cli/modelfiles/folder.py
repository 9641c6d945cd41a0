"""Model folders: ``config.json`` + ``model.safetensors`` + ``tokenizer.json`` + ``README.md``.

Loading a model for inference never unpickles anything: weights are safetensors,
configuration is JSON. Folders are written to a temporary sibling and renamed into
place, so a crash never leaves a folder that looks whole but is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import ModelFolderConfig
from ..core.model import DiffuSeqTransformer
from ..errors import DiffuseqError
from .tokenizer import TextTokenizer, load_tokenizer

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
CARD = "README.md"
COMPLETE = ".complete"  # written last: a folder without it is not a finished checkpoint


@dataclass
class LoadedModel:
    config: ModelFolderConfig
    model: DiffuSeqTransformer
    tokenizer: TextTokenizer
    path: Path | None = None


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside ``final``; on success it replaces ``final`` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        (tmp / COMPLETE).write_text("")
        _normal_permissions(tmp)
        _fsync_dir(tmp)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_parent(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _normal_permissions(path: Path) -> None:
    """mkdtemp makes 0700 folders; give the result the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    for f in path.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~umask)


def _fsync_parent(path: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the containing directory)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE).exists() and (Path(folder) / WEIGHTS).exists()


def write_model_folder(
    folder: Path, config: ModelFolderConfig, state_dict: dict, tokenizer: TextTokenizer, card: str, dtype=None
) -> None:
    """Write the four files of a model folder into ``folder`` (which must exist; see ``atomic_dir``)."""
    folder = Path(folder)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu() for k, v in state_dict.items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt", "diffuseq_format": str(config.written_version())})
    write_config(folder, config)
    tokenizer.save(folder / TOKENIZER)
    (folder / CARD).write_text(card)


def write_config(folder: Path, config: ModelFolderConfig) -> None:
    """``config.json`` of a model folder (atomically: a folder whose other files stay as they are)."""
    path = Path(folder) / CONFIG
    tmp = path.with_name(f".{CONFIG}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


def save_model_folder(folder: Path, config: ModelFolderConfig, model: DiffuSeqTransformer, tokenizer: TextTokenizer, card: str, dtype=None) -> None:
    """Atomically write a complete model folder for ``model``."""
    with atomic_dir(folder) as tmp:
        write_model_folder(tmp, config, model.state_dict(), tokenizer, card, dtype=dtype)


def read_config(folder: Path) -> ModelFolderConfig:
    path = Path(folder) / CONFIG
    try:
        return ModelFolderConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise DiffuseqError(f"{folder} is not a model folder (no {CONFIG})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DiffuseqError(f"{path}: invalid model configuration: {exc}") from None


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """A model folder's weights as float32 (stored in fp16 or fp32)."""
    path = Path(folder) / WEIGHTS
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise DiffuseqError(f"{folder} has no {WEIGHTS}") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise DiffuseqError(f"{path}: cannot read weights ({exc})") from None
    return {k: v.float() for k, v in state.items()}


def initial_weights(folder: Path, model: DiffuSeqTransformer) -> dict[str, torch.Tensor]:
    """``train --init``: the folder's weights as float32 for ``model``, its new parts (a length head,
    an absorbing state the folder lacks) taken from ``model`` as initialised; any other mismatch is an error."""
    try:
        state = read_weights(folder)
    except DiffuseqError as exc:
        raise DiffuseqError(f"--init: {exc} (pass a model folder)") from None
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise DiffuseqError(f"--init {folder}: weights the new model has no place for ({', '.join(unexpected[:3])})")
    for name, value in own.items():
        if name not in state:
            if not name.startswith(("length_predictor.", "absorbing_state")):
                raise DiffuseqError(f"--init {folder}: lacks {name}")
            state[name] = value.detach().clone()
        elif state[name].shape != value.shape:
            raise DiffuseqError(f"--init {folder}: {name} has shape {tuple(state[name].shape)}, the new model {tuple(value.shape)}")
    return state


def load_model_folder(folder: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder for inference (eval mode, float32 weights on ``device``)."""
    folder = Path(folder)
    config = read_config(folder)
    model = DiffuSeqTransformer(config.model)
    state = read_weights(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DiffuseqError(f"{folder / WEIGHTS} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval().to(device)
    return LoadedModel(config=config, model=model, tokenizer=load_tokenizer(folder / TOKENIZER), path=folder)
