"""The official sequence layout: ``[CLS] x [SEP] [SEP] [CLS] y [SEP] [PAD]...`` (DESIGN.md section 4).

The first ``n_src`` positions (through the second [SEP]) are the source, everything after,
padding included, is target: the model decides the length by generating padding. Training
packs pairs this way; generation packs the source part alone and samples the target part.
"""

from __future__ import annotations

NUM_SPECIALS = 5  # [CLS] [SEP] [SEP] [CLS] [SEP]
SOURCE_SPECIALS = 3  # the source part's: [CLS] x [SEP] [SEP]


def truncate_pair(x: list[int], y: list[int], budget: int) -> tuple[list[int], list[int], bool]:
    """Shorten the longer side first until len(x) + len(y) <= budget; both sides keep at least one token."""
    if len(x) + len(y) <= budget:
        return x, y, False
    x, y = list(x), list(y)
    while len(x) + len(y) > budget:
        if len(x) >= len(y) and len(x) > 1:
            x.pop()
        elif len(y) > 1:
            y.pop()
        else:
            x.pop()
    return x, y, True


def pack_source(x: list[int], cls_id: int, sep_id: int) -> list[int]:
    """The source part: ``[CLS] x [SEP] [SEP]``."""
    return [cls_id, *x, sep_id, sep_id]


def pack(x: list[int], y: list[int], cls_id: int, sep_id: int) -> tuple[list[int], int]:
    """The official layout without padding: (ids, n_src)."""
    src = pack_source(x, cls_id, sep_id)
    return src + [cls_id, *y, sep_id], len(src)
