"""Stochastic fixed-point quantization of a float update into the ring Z_{2^bits}.

Each coordinate is clipped to ``[-clip, clip]`` and mapped to an integer level in
``[0, levels]`` with ``levels = floor((2^bits - 1) / max_summands)``, rounding up with
probability equal to the fraction (unbiased). The sum of up to ``max_summands`` such
vectors is below 2^bits, so it never wraps and dequantizes exactly to the sum of the
levels; the error per coordinate of one vector is below one step ``2·clip / levels``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def levels(bits: int, max_summands: int) -> int:
    """The top level one learner's coordinate may take."""
    top = ((1 << bits) - 1) // max(1, max_summands)
    if top < 2:
        raise ValueError(
            f"secure_aggregation.bits={bits} leaves fewer than 2 levels for {max_summands} learners"
        )
    return top


def quantize(
    values: npt.NDArray[np.floating],
    *,
    clip: float,
    bits: int,
    max_summands: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint64]:
    top = levels(bits, max_summands)
    scaled = np.clip(values, -clip, clip, dtype=np.float64)  # a fresh array: work in place
    scaled += clip
    scaled *= top / (2 * clip)
    floor = np.floor(scaled)
    scaled -= floor  # the fraction: the chance of rounding up
    floor += rng.random(scaled.shape) < scaled
    levels_: npt.NDArray[np.uint64] = np.minimum(floor, top, out=floor).astype(np.uint64)
    return levels_


def dequantize_sum(
    total: npt.NDArray[np.uint64], *, count: int, clip: float, bits: int, max_summands: int
) -> npt.NDArray[np.float64]:
    """The float sum of ``count`` quantized vectors whose ring sum is ``total``."""
    top = levels(bits, max_summands)
    return total.astype(np.float64) * (2 * clip / top) - count * clip
