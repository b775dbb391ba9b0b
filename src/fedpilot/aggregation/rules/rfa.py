"""Robust federated aggregation by the geometric median (Pillutla et al. 2022, "Robust
Aggregation for Federated Learning")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation.rules._base import AggregationRule, Rows, RuleOutcome, Vector
from fedpilot.aggregation.rules._ops import column_slices, normalised_weights

if TYPE_CHECKING:
    from fedpilot.spec.aggregation import AggregationSpec


class GeometricMedian(AggregationRule):
    """The weighted geometric median ``argmin_z Σ p_i ‖z − d_i‖``, by smoothed Weiszfeld.

    Starting from the weighted mean, each iteration re-weights the updates by
    ``α_i ∝ p_i / max(ν, ‖z − d_i‖)`` and sets ``z = Σ α_i d_i``; it stops once the
    objective changes by less than ``tol`` (relative) or after ``max_iter`` iterations.
    Each iteration is one chunked pass: the pass that forms ``z`` chunk by chunk also
    accumulates every update's distance to it, so ``z`` is never held twice. Uses
    ``aggregation_weight`` (``p_i = w_i / Σ w``).

    Args:
        max_iter: Most Weiszfeld iterations after the initial mean.
        tol: Relative change of the objective that ends the iteration.
        nu: Smoothing ``ν``: distances below it count as ``ν`` (no division by zero).
    """

    name = "rfa"

    def __init__(self, max_iter: int = 20, tol: float = 1e-6, nu: float = 1e-6) -> None:
        if max_iter < 1:
            raise ValueError(f"`rfa_max_iter` must be >= 1, got rfa_max_iter={max_iter}")
        if not tol > 0:
            raise ValueError(f"`rfa_tol` must be > 0, got rfa_tol={tol}")
        if not nu > 0:
            raise ValueError(f"`nu` must be > 0, got nu={nu}")
        self.max_iter = max_iter
        self.tol = tol
        self.nu = nu
        self.iterations = 0
        """Weiszfeld iterations the last ``combine`` ran (for tests and reports)."""

    @classmethod
    def from_spec(cls, spec: AggregationSpec) -> Self:
        return cls(spec.rfa_max_iter, spec.rfa_tol)

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        p = normalised_weights(rows, self.name)
        alphas = p
        distances = _combine_and_measure(rows, alphas, out)
        objective = float(p @ distances)
        self.iterations = 0
        for _ in range(self.max_iter):
            inverse = p / np.maximum(self.nu, distances)
            alphas = inverse / inverse.sum()
            distances = _combine_and_measure(rows, alphas, out)
            previous, objective = objective, float(p @ distances)
            self.iterations += 1
            if abs(previous - objective) <= self.tol * objective:
                break
        return RuleOutcome(shares=alphas)


def _combine_and_measure(rows: Rows, alphas: Vector, out: npt.NDArray[np.float32]) -> Vector:
    """Write ``z = Σ α_i d_i`` into ``out``; return every ``‖d_i − z‖`` (one pass, float64)."""
    squared = np.zeros(rows.n, dtype=np.float64)
    for cols, block in rows.chunks():
        for sub in column_slices(block.shape[1]):
            part = block[:, sub].astype(np.float64)
            z = alphas @ part
            out[cols.start + sub.start : cols.start + sub.stop] = z
            part -= z
            squared += np.einsum("ij,ij->i", part, part)
    return np.sqrt(squared)
