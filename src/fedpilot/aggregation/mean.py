"""Streaming weighted mean: FedAvg's aggregation as a fold."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot._blas import add_scaled
from fedpilot.aggregation._base import AggregationReport, Aggregator, check_shapes
from fedpilot.types import LearnerId, RoundContext, Update, Weights


class WeightedMean(Aggregator):
    """Mean of updates weighted by ``aggregation_weight``, folded as they arrive.

    Each ``add`` is one fused ``sum += w·x`` pass per array (BLAS axpy, in place), so an
    update is read once; memory is one accumulator per array, whatever the number of
    updates.

    Precision and order: by default floating arrays accumulate in their own dtype,
    which is fastest but makes the last bits depend on the order updates arrive in.
    A fleet whose reply order is not deterministic (a process pool) asks for
    ``order_independent=True``: sums then run in float64, where a float32 value times an
    integer weight is exact, so the float32 result no longer depends on arrival order
    (barring ties at the last float32 bit, vanishingly rare). Integer arrays (counters)
    always sum in float64 and round to the nearest integer.
    """

    def __init__(self, *, order_independent: bool = False) -> None:
        self.order_independent = order_independent
        self._sums: list[npt.NDArray[np.floating[Any]]] = []
        """One flat accumulator per array of the model."""
        self._shapes: list[tuple[int, ...]] = []
        self._dtypes: list[np.dtype[Any]] = []
        self._total_weight = 0.0
        self._count = 0
        self._weights: dict[LearnerId, float] = {}
        self._report = AggregationReport()

    def begin(self, *, reference: Weights, ctx: RoundContext) -> None:
        del ctx
        shapes = [r.shape for r in reference]
        dtypes = [self._accumulator_dtype(r.dtype) for r in reference]
        reusable = shapes == self._shapes and all(
            s.dtype == d for s, d in zip(self._sums, dtypes, strict=True)
        )
        if reusable:
            for total in self._sums:
                total.fill(0)
        else:
            self._sums = [np.zeros(r.size, dtype=d) for r, d in zip(reference, dtypes, strict=True)]
        self._shapes = shapes
        self._dtypes = [r.dtype for r in reference]
        self._total_weight = 0.0
        self._count = 0
        self._weights = {}
        self._report = AggregationReport()

    def _accumulator_dtype(self, dtype: np.dtype[Any]) -> np.dtype[Any]:
        if self.order_independent or not np.issubdtype(dtype, np.floating):
            return np.dtype(np.float64)
        return np.dtype(np.float64 if dtype == np.float64 else np.float32)

    def add(self, update: Update) -> None:
        weight = update.aggregation_weight
        check_shapes(update, self._shapes)
        for total, array in zip(self._sums, update.weights, strict=True):
            add_scaled(total, array, weight)
        self._total_weight += weight
        self._count += 1
        self._weights[update.learner] = self._weights.get(update.learner, 0.0) + weight

    def result(self) -> Weights:
        if self._count == 0 or self._total_weight <= 0:
            raise ValueError("no updates were added this round; nothing to average")
        scale = 1.0 / self._total_weight
        out: Weights = []
        for total, shape, dtype in zip(self._sums, self._shapes, self._dtypes, strict=True):
            mean = (total * scale).reshape(shape)
            if np.issubdtype(dtype, np.integer):
                mean = np.rint(mean)
            out.append(mean.astype(dtype, copy=False))
        self._report = AggregationReport(
            shares={k: w * scale for k, w in sorted(self._weights.items())}
        )
        return out

    @property
    def last_report(self) -> AggregationReport:
        """Each learner's share of the last result: its weight over the total."""
        return self._report

    @property
    def count(self) -> int:
        return self._count
