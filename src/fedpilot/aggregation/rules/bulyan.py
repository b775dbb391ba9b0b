"""Bulyan (El Mhamdi et al. 2018, "The Hidden Vulnerability of Distributed Learning in
Byzantium")."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import Rows, RuleOutcome
from fedpilot.aggregation.rules._ops import (
    byzantine_count,
    column_slices,
    krum_scores,
    lanes,
    squared_distances,
)
from fedpilot.aggregation.rules.krum import ByzantineRule


class Bulyan(ByzantineRule):
    """Krum selection, then a trimmed mean around the median, per coordinate.

    With ``f = floor(byzantine_fraction · n)`` capped at ``(n − 3) // 4`` (so
    ``n ≥ 4f + 3``): select ``θ = n − 2f`` updates by applying Krum repeatedly, each
    time to the updates not yet selected; then, per coordinate, average the
    ``β = θ − 2f`` selected values closest to their median (ties go to the update with
    the smaller learner id). Unweighted throughout.

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
        for cols, block in rows.chunks(chosen):
            for sub in column_slices(block.shape[1]):
                values = lanes(block, sub)
                median = np.median(values, axis=1, keepdims=True)
                closest = np.argsort(np.abs(values - median), axis=1, kind="stable")[:, :beta]
                kept = np.take_along_axis(values, closest, axis=1)
                mean = kept.sum(axis=1, dtype=np.float64) / beta
                out[cols.start + sub.start : cols.start + sub.stop] = mean
        return RuleOutcome(selected=tuple(chosen), byzantine=f)
