"""The weighted mean as a buffered rule (when clipping or cohort checks need the buffer)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import AggregationRule, Rows, RuleOutcome
from fedpilot.aggregation.rules._ops import normalised_weights, weighted_combine


class Mean(AggregationRule):
    """``Σ p_i d_i`` with ``p_i = w_i / Σ w`` (``w`` = ``Update.aggregation_weight``).

    The same aggregate as the streaming :class:`~fedpilot.aggregation.WeightedMean`,
    but over buffered rows, so updates can be clipped against the cohort's norms or
    excluded before the mean is taken. Not robust: one update can move it anywhere.
    """

    name = "mean"

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        shares = normalised_weights(rows, self.name)
        weighted_combine(rows, shares, out)
        return RuleOutcome(shares=shares)
