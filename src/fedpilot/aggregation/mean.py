"""Streaming weighted mean: FedAvg's aggregation as a fold."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation._base import Aggregator
from fedpilot.types import RoundContext, Update, Weights


class WeightedMean(Aggregator):
    """Mean of updates weighted by ``num_examples``, folded as they arrive.

    Sums run in float64 and the result is cast back to each array's dtype: a float32
    value times an integer weight is exact in float64, so the float32 result does not
    depend on arrival order except for ties at the last float32 bit (vanishingly rare).
    Memory is two float64 buffers per array, whatever the number of updates.
    """

    def __init__(self) -> None:
        self._sums: list[npt.NDArray[np.float64]] = []
        self._scratch: list[npt.NDArray[np.float64]] = []
        self._dtypes: list[np.dtype[np.generic]] = []
        self._total_weight = 0.0
        self._count = 0

    def begin(self, *, reference: Weights, ctx: RoundContext) -> None:
        del ctx
        if len(self._sums) == len(reference) and all(
            s.shape == r.shape for s, r in zip(self._sums, reference, strict=True)
        ):
            for buffer in self._sums:
                buffer.fill(0.0)
        else:
            self._sums = [np.zeros(r.shape, dtype=np.float64) for r in reference]
            self._scratch = [np.empty(r.shape, dtype=np.float64) for r in reference]
        self._dtypes = [r.dtype for r in reference]
        self._total_weight = 0.0
        self._count = 0

    def add(self, update: Update) -> None:
        weight = float(update.num_examples)
        if len(update.weights) != len(self._sums):
            raise ValueError(
                f"update from {update.learner} has {len(update.weights)} arrays, "
                f"expected {len(self._sums)}"
            )
        for total, scratch, array in zip(self._sums, self._scratch, update.weights, strict=True):
            np.multiply(array, weight, out=scratch)
            total += scratch
        self._total_weight += weight
        self._count += 1

    def result(self) -> Weights:
        if self._count == 0 or self._total_weight <= 0:
            raise ValueError("no updates were added this round; nothing to average")
        scale = 1.0 / self._total_weight
        out: Weights = []
        for total, dtype in zip(self._sums, self._dtypes, strict=True):
            mean = total * scale
            if np.issubdtype(dtype, np.integer):
                mean = np.rint(mean)
            out.append(mean.astype(dtype, copy=False))
        return out

    @property
    def count(self) -> int:
        return self._count
