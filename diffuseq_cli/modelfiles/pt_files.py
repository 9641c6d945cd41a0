"""Reading PyTorch ``.pt`` files (official checkpoints, a run's resume state) without running code.

``torch.load(weights_only=True)`` only: a pickle that names anything but tensors and plain
containers is refused unread (DESIGN.md section 6). torch's own message for that advises
loading unsafely, which must never reach a user holding a downloaded file, so every failure
becomes one line that says what the file is not and why.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DiffuseqError


def load_tensors(path: str | Path, not_what: str):
    """The file's content, read with ``weights_only=True``; else a DiffuseqError ``{path}: {not_what}: it {why}``.

    ``not_what`` names what the file then is not ("not an official DiffuSeq checkpoint").
    ``FileNotFoundError`` and ``IsADirectoryError`` pass through, for callers to phrase.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Exception as exc:  # noqa: BLE001: torch raises many kinds; each becomes the one line below
        raise DiffuseqError(f"{path}: {not_what}: it {_why(exc)}") from None


def _why(exc: Exception) -> str:
    text = str(exc)
    if "unsupported global" in text.lower():  # torch < 2.13: "Unsupported global"; 2.13: "unsupported GLOBAL"
        return "holds objects other than tensors, which are never unpickled"
    if "weights_only" in text:
        return "cannot be read as a file of tensors"
    first = (text.strip().splitlines() or [type(exc).__name__])[0][:120]
    return f"cannot be read as a PyTorch file ({first})"
