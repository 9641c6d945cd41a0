"""One recipe for derived seeds: a 63-bit seed from a few integers alone.

Sampling draws the noise of candidate k of line i from (seed, i, k), training the noise of a
block of samples from (seed, step, block, stream): results then do not depend on batch sizes,
orders or process counts. NumPy's SeedSequence mixes the integers so that neighbouring tuples
give unrelated streams.
"""

from __future__ import annotations

import numpy as np


def derived_seed(*entropy: int) -> int:
    """A 63-bit seed from the given non-negative integers (the first taken modulo 2**32)."""
    values = [entropy[0] & 0xFFFFFFFF, *entropy[1:]]
    hi, lo = (int(v) for v in np.random.SeedSequence(values).generate_state(2, dtype=np.uint32))
    return (hi << 31) ^ lo
