"""Device and numeric precision: one rule for every command (DESIGN.md section 5).

``auto`` means the first CUDA GPU when there is one, else the CPU; bf16 on GPUs that support
it, fp32 everywhere else unless asked; autocast is the caller's context, never buried inside
a model's forward.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import FieldError, literal


def resolve_device(device: str) -> str:
    """``--device`` as a torch device string: auto, cpu, cuda or cuda:N, checked against this machine."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FieldError(f"{{device}} {literal(device)}: no CUDA GPU is available")
    try:
        torch.device(device)
    except RuntimeError:
        raise FieldError(f"{{device}} {literal(device)}: expected auto, cpu, cuda or cuda:N") from None
    return device


def check_gpus(gpus: tuple[int, ...]) -> None:
    """``--gpus`` device ids against this machine's CUDA devices (``train`` and ``generate``)."""
    if not torch.cuda.is_available():
        raise FieldError("{gpus} was given, but no CUDA GPU is available (use {nproc} N for CPU processes)")
    if max(gpus) >= torch.cuda.device_count():
        raise FieldError(f"{{gpus}} {','.join(map(str, gpus))}: this machine has {torch.cuda.device_count()} GPU(s)")


def resolve_precision(requested: str | None, device: torch.device | str) -> str:
    """The precision to use: the requested one, else bf16 on capable CUDA devices, else fp32."""
    if requested:
        return requested
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device | str):
    """A context that runs matmuls in ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)
