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
        span = theta - beta + 1  # candidate windows of β consecutive sorted values
        for cols, block in rows.chunks(chosen):
            for sub in column_slices(block.shape[1], LANE_SLICE):
                values = sorted_lanes(block, sub)
                first = _closest_window(values, middle(values)[:, None], beta, span)
                kept = np.take_along_axis(values, first[:, None] + offsets, axis=1)
                mean = kept.sum(axis=1, dtype=np.float64) / beta
                out[cols.start + sub.start : cols.start + sub.stop] = mean
        return RuleOutcome(selected=tuple(chosen), byzantine=f)


def _closest_window(
    values: npt.NDArray[np.float32], median: npt.NDArray[np.float64], beta: int, span: int
) -> npt.NDArray[np.intp]:
    """Per row of sorted ``values``, the start of the β values closest to ``median``.

    Distances to the median fall and then rise along a sorted row, so the β closest
    values are a contiguous window: one whose farthest member is no farther than either
    value just outside it. Of several such windows (equal distances at its ends) the
    first is taken, i.e. the smaller values. Only a window's own farthest member is not
    enough: with two equal values at that distance, the window holding both can skip a
    nearer value on the other side.
    """
    rows = values.shape[0]
    reach = np.maximum(median - values[:, :span], values[:, beta - 1 :] - median)
    left_out = np.full((rows, span), np.inf)
    left_out[:, 1:] = median - values[:, : span - 1]
    right_out = np.full((rows, span), np.inf)
    right_out[:, :-1] = values[:, beta:] - median
    valid = (left_out >= reach) & (right_out >= reach)
    return np.asarray(np.argmax(valid, axis=1), dtype=np.intp)
