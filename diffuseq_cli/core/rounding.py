"""Rounding a z_0 estimate to words: the nearest embedding (the paper), the tied head's argmax,
or the expected embedding under the head (soft); and the head's confidence, which re-masking reads.

The vocabulary is scored in row blocks (``_row_blocks``), so results never depend on how many
rows a batch holds, and only on the target part's positions (``TargetRows``): anchoring
overwrites the source part, so scoring it would be half the work for nothing.
"""

from __future__ import annotations

import torch

from ..config import ROUNDINGS


ROW_MULTIPLE = 8  # matrix products over a multiple of 8 rows give each row the same bits (generation/batches.py)


class TargetRows:
    """The target part of a (B, L) batch as one list of rows, padded to a multiple of ROW_MULTIPLE
    with copies of its first row (thrown away): ``take`` gathers them, ``put`` scatters results back."""

    def __init__(self, target_mask: torch.Tensor):
        self.index = target_mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions of the target part
        n = self.index.numel()
        padded = -(-n // ROW_MULTIPLE) * ROW_MULTIPLE
        self.rows = torch.cat([self.index, self.index[:1].expand(padded - n)])

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) -> (N', ...): the target rows, padded."""
        return x.reshape(-1, *x.shape[2:])[self.rows]

    def put(self, values: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """``base`` (B, L, ...) with its target rows replaced by the first N of ``values`` (N', ...)."""
        out = base.reshape(-1, *base.shape[2:]).clone()
        out[self.index] = values[: self.index.numel()].to(out.dtype)
        return out.view_as(base)


def _row_blocks(n: int, V: int, device: torch.device) -> list[tuple[int, int]]:
    """(start, stop) row blocks for (rows, V) score matrices.

    A (rows, V) block stays in cache on a CPU (2-3x faster than one (n, V) matrix) and bounds
    memory on a GPU. Blocks hold at least 64 rows, and a short remainder joins the last block:
    a matrix product gives a row the same bits for any such row count (products of a few rows
    take other BLAS code paths), so results do not depend on the blocking or the batch.
    """
    rows = max(64, (2**18 if device.type == "cpu" else 2**30) // (4 * V))
    starts = list(range(0, n, rows))
    if len(starts) > 1 and n - starts[-1] < 64:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def _head_blocks(flat: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor):
    """(start, stop, logits) of the tied head, z·e + bias, over ``_row_blocks`` of flat (N, d)."""
    for start, stop in _row_blocks(flat.shape[0], table.shape[0], flat.device):
        yield start, stop, flat[start:stop] @ table.T + head_bias.to(flat.dtype)


def round_to_embeddings(
    z: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The word for each position: z (B, L, d), table (V, d) -> (rows (B, L, d), ids (B, L)).

    Without ``head_bias``: the nearest embedding row by L2 (the paper's rounding). With it: the
    argmax of the tied head, z·e + bias (``rounding="logits"``).
    """
    flat = z.reshape(-1, z.shape[-1])  # (B·L, d)
    ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
    if head_bias is not None:
        for start, stop, logits in _head_blocks(flat, table, head_bias):
            ids[start:stop] = logits.argmax(dim=-1)
        return table[ids].view_as(z), ids.view(z.shape[:-1])
    # ‖z - e‖² = ‖z‖² - 2 z·e + ‖e‖²; ‖z‖² does not change the argmin.
    e2 = (table * table).sum(-1)  # (V,)
    for start, stop in _row_blocks(flat.shape[0], table.shape[0], flat.device):
        scores = flat[start:stop] @ table.T
        # In place on the one (rows, V) product: scaling by -2 is exact and e + (-x) is e - x bit for bit.
        dist = scores.mul_(-2)
        dist = dist.add_(e2) if dist.dtype == e2.dtype else e2 + dist  # autocast: promote as e2 - 2 z·e would
        ids[start:stop] = dist.argmin(dim=-1)
    return table[ids].view_as(z), ids.view(z.shape[:-1])


def expected_embedding(z: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor) -> torch.Tensor:
    """Σ_w p(w | z) EMB(w) under the tied head, (B, L, d) -> (B, L, d) (``rounding="soft"``).

    Soft rounding (CDCD's score interpolation): at high noise the estimate stays a blend of
    the plausible words instead of committing to the most frequent one; as p(w | z) sharpens
    it becomes that word's embedding.
    """
    flat = z.reshape(-1, z.shape[-1])
    out = torch.empty_like(flat)
    for start, stop, logits in _head_blocks(flat, table, head_bias):
        probs = torch.softmax(logits.float(), dim=-1)
        out[start:stop] = (probs @ table.float()).to(out.dtype)
    return out.view_as(z)


def head_choice(z: torch.Tensor, table: torch.Tensor, head_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's word and its probability, (B, L, d) -> (max_w p(w | z), argmax ids), both (B, L).

    The ids are those of ``round_to_embeddings(z, table, head_bias)`` (same blocks, same sums),
    so logits rounding can reuse them instead of scoring the vocabulary twice.
    """
    flat = z.reshape(-1, z.shape[-1])
    conf = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
    ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
    for start, stop, logits in _head_blocks(flat, table, head_bias):
        ids[start:stop] = logits.argmax(dim=-1)
        conf[start:stop] = torch.softmax(logits.float(), dim=-1).amax(dim=-1)
    return conf.view(z.shape[:-1]), ids.view(z.shape[:-1])


def round_estimate(z0: torch.Tensor, rounding: str, table: torch.Tensor, head_bias: torch.Tensor,
                   head_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The z_0 estimate after ``rounding`` ("l2", "logits", "soft" or "none"), (B, L, d).

    ``head_ids``: the head's argmax already computed (``head_choice``), which logits rounding reuses.
    """
    if rounding == "l2":
        return round_to_embeddings(z0, table)[0]
    if rounding == "logits":
        return table[head_ids] if head_ids is not None else round_to_embeddings(z0, table, head_bias)[0]
    if rounding == "soft":
        return expected_embedding(z0, table, head_bias)
    if rounding == "none":
        return z0
    raise ValueError(f"unknown rounding {rounding!r}; choose from {', '.join(ROUNDINGS)}")
