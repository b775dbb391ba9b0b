"""Coordinate-wise median (Yin et al. 2018)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import AggregationRule, Rows, RuleOutcome
from fedpilot.aggregation.rules._ops import LANE_SLICE, column_slices, middle, sorted_lanes


class Median(AggregationRule):
    """Per coordinate, the median of the ``n`` values (the mean of the two middle ones
    when ``n`` is even).

    Unweighted: every update counts once whatever its ``aggregation_weight`` (a weight is
    a claim an attacker controls). Tolerates fewer than half the updates being arbitrary.
    """

    name = "median"

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        for cols, block in rows.chunks():
            for sub in column_slices(block.shape[1], LANE_SLICE):
                values = sorted_lanes(block, sub)
                out[cols.start + sub.start : cols.start + sub.stop] = middle(values)
        return RuleOutcome()
