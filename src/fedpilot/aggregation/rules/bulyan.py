"""Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed Learning in
Byzantium")."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import Rows, RuleOutcome
from fedpilot.aggregation.rules._ops import (
    LANE_SLICE,
    byzantine_count,
    column_slices,
    krum_scores,
    middle,
    sorted_lanes,
    squared_distances,
)
from fedpilot.aggregation.rules.krum import ByzantineRule


class Bulyan(ByzantineRule):
    """Krum selection, then a trimmed mean around the median, per coordinate.

    With ``f = floor(byzantine_fraction · n)`` capped at ``(n − 3) // 4`` (so
    ``n ≥ 4f + 3``): select ``θ = n − 2f`` updates by applying Krum repeatedly, each
    time to the updates not yet selected; then, per coordinate, average the
    ``β = θ − 2f`` selected values closest to their median (of two equally close
    candidates, the smaller value). Unweighted throughout.

    Args:
        byzantine_fraction: Assumed share of Byzantine updates, in ``[0, 0.5)``.
    """

    name = "bulyan"

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        n = rows.n
        f = byzantine_count(n, self.byzantine_fraction, rule=self.name, per_f=4)
        theta, beta = n - 2 * f, n - 4 * f
        dist = squared_distances(rows)
        remaining = list(range(n))
        chosen: list[int] = []
        for _ in range(theta):
            # argmin takes the first of equal scores: the lowest canonical index.
            best = remaining[int(np.argmin(krum_scores(dist, remaining, f)))]
            chosen.append(best)
            remaining.remove(best)
        chosen.sort()
        offsets = np.arange(beta)
        for cols, block in rows.chunks(chosen):
            for sub in column_slices(block.shape[1], LANE_SLICE):
                values = sorted_lanes(block, sub)
                median = middle(values)[:, None]
                # In sorted order the β values closest to the median are a contiguous
                # window; it is the one whose farthest end is nearest (first on ties).
                reach = np.maximum(
                    median - values[:, : theta - beta + 1], values[:, beta - 1 :] - median
                )
                first = np.argmin(reach, axis=1)[:, None]
                kept = np.take_along_axis(values, first + offsets, axis=1)
                mean = kept.sum(axis=1, dtype=np.float64) / beta
                out[cols.start + sub.start : cols.start + sub.stop] = mean
        return RuleOutcome(selected=tuple(chosen), byzantine=f)
