"""Update-norm bounding: scale each delta down to at most a bound (fixed or a quantile)."""

from __future__ import annotations

import numpy as np

from fedpilot.aggregation.rules._base import Vector
from fedpilot.spec.aggregation import NormClipSpec


def norm_bound(norms: Vector, clip: NormClipSpec) -> float:
    """The bound for this cohort: ``clip.bound``, or the ``clip.quantile`` of ``norms``.

    The quantile is numpy's default (linear interpolation between order statistics),
    which depends only on the set of norms, not on their order.
    """
    if clip.bound is not None:
        return float(clip.bound)
    assert clip.quantile is not None  # NormClipSpec guarantees exactly one is set
    return float(np.quantile(norms, clip.quantile))


def clip_factors(norms: Vector, bound: float) -> Vector:
    """Per update ``min(1, bound / ‖d‖)``; a zero delta keeps factor 1."""
    factors = np.ones_like(norms, dtype=np.float64)
    over = norms > bound
    factors[over] = bound / norms[over]
    return factors
