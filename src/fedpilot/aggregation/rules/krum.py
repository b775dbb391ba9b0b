"""Krum and Multi-Krum (Blanchard et al. 2017, "Machine Learning with Adversaries")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import AggregationRule, Rows, RuleOutcome
from fedpilot.aggregation.rules._ops import (
    byzantine_count,
    krum_scores,
    normalised_weights,
    squared_distances,
    weighted_combine,
)

if TYPE_CHECKING:
    from fedpilot.spec.aggregation import AggregationSpec


class ByzantineRule(AggregationRule):
    """A rule that assumes up to a share ``byzantine_fraction`` of the updates are Byzantine.

    Args:
        byzantine_fraction: Assumed share of Byzantine updates, in ``[0, 0.5)``.
    """

    def __init__(self, byzantine_fraction: float = 0.2) -> None:
        if not 0 <= byzantine_fraction < 0.5:
            raise ValueError(
                "`byzantine_fraction` must be in [0, 0.5), "
                f"got byzantine_fraction={byzantine_fraction}"
            )
        self.byzantine_fraction = byzantine_fraction

    @classmethod
    def from_spec(cls, spec: AggregationSpec) -> Self:
        return cls(spec.byzantine_fraction)


def ranked_by_krum(rows: Rows, f: int) -> npt.NDArray[np.intp]:
    """Row indices from best (lowest Krum score) to worst; ties go to the lower index."""
    scores = krum_scores(squared_distances(rows), range(rows.n), f)
    return np.argsort(scores, kind="stable")


class Krum(ByzantineRule):
    """The one update whose ``n − f − 2`` nearest neighbours are closest (in squared L2).

    ``f = floor(byzantine_fraction · n)``, capped at ``(n − 3) // 2`` so that
    ``n ≥ 2f + 3`` holds. Selection is unweighted. Pairwise distances come from a Gram
    matrix accumulated over chunks in float64 (one pass), the pick from a second pass.

    Args:
        byzantine_fraction: Assumed share of Byzantine updates, in ``[0, 0.5)``.
    """

    name = "krum"

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        f = byzantine_count(rows.n, self.byzantine_fraction, rule=self.name, per_f=2)
        best = int(ranked_by_krum(rows, f)[0])
        pick = np.zeros(rows.n, dtype=np.float64)
        pick[best] = 1.0
        weighted_combine(rows, pick, out)
        return RuleOutcome(shares=pick, selected=(best,), byzantine=f)


class MultiKrum(ByzantineRule):
    """The weighted mean of the ``m`` updates with the best Krum scores.

    Scores are computed once over all updates (unweighted, as in Krum); the final mean
    uses ``aggregation_weight``. ``m`` defaults to ``n − f`` and is capped at ``n``.

    Args:
        byzantine_fraction: Assumed share of Byzantine updates, in ``[0, 0.5)``.
        m: How many updates to average; None for ``n − f``.
    """

    name = "multikrum"

    def __init__(self, byzantine_fraction: float = 0.2, m: int | None = None) -> None:
        super().__init__(byzantine_fraction)
        if m is not None and m < 1:
            raise ValueError(f"`multikrum_m` must be >= 1, got multikrum_m={m}")
        self.m = m

    @classmethod
    def from_spec(cls, spec: AggregationSpec) -> Self:
        return cls(spec.byzantine_fraction, spec.multikrum_m)

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        n = rows.n
        f = byzantine_count(n, self.byzantine_fraction, rule=self.name, per_f=2)
        m = min(n - f if self.m is None else self.m, n)
        chosen = sorted(int(i) for i in ranked_by_krum(rows, f)[:m])
        shares = np.zeros(n, dtype=np.float64)
        shares[chosen] = normalised_weights(rows, self.name, chosen)
        weighted_combine(rows, shares, out)
        return RuleOutcome(shares=shares, selected=tuple(chosen), byzantine=f)
