"""Coordinate-wise trimmed mean (Yin et al. 2018)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Self

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import AggregationRule, Rows, RuleOutcome
from fedpilot.aggregation.rules._ops import LANE_SLICE, column_slices, sorted_lanes

if TYPE_CHECKING:
    from fedpilot.spec.aggregation import AggregationSpec


class TrimmedMean(AggregationRule):
    """Per coordinate, drop the ``k = floor(β·n)`` smallest and ``k`` largest values and
    average the ``n − 2k`` left.

    Unweighted, like the median. With ``β = 0`` it is the plain (unweighted) mean.

    Args:
        trim_fraction: ``β``, in ``[0, 0.5)``.
    """

    name = "trimmed_mean"

    def __init__(self, trim_fraction: float = 0.1) -> None:
        if not 0 <= trim_fraction < 0.5:
            raise ValueError(
                f"`trim_fraction` must be in [0, 0.5), got trim_fraction={trim_fraction}"
            )
        self.trim_fraction = trim_fraction

    @classmethod
    def from_spec(cls, spec: AggregationSpec) -> Self:
        return cls(spec.trim_fraction)

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        n = rows.n
        k = math.floor(self.trim_fraction * n)
        kept = n - 2 * k  # ≥ 1 because β < 0.5
        for cols, block in rows.chunks():
            for sub in column_slices(block.shape[1], LANE_SLICE):
                values = sorted_lanes(block, sub)[:, k : n - k]
                mean = values.sum(axis=1, dtype=np.float64) / kept
                out[cols.start + sub.start : cols.start + sub.stop] = mean
        return RuleOutcome()
