"""FedNova's normalised averaging (Wang et al. 2020, "Tackling the Objective Inconsistency
Problem in Heterogeneous Federated Optimization"), as a streaming fold."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from fedpilot._blas import add_scaled
from fedpilot.aggregation._base import AggregationReport, Aggregator, check_shapes, check_weight
from fedpilot.types import LearnerId, RoundContext, Update, Weights

LOCAL_STEPS = "local_steps"
"""The ``Update.metrics`` key holding a learner's local step count ``τ_i``."""


class FedNovaMean(Aggregator):
    """``x − τ_eff · Σ p_i (x − y_i) / τ_i`` with ``τ_eff = Σ p_i τ_i``, ``p_i = w_i / Σ w``.

    Learners that ran more local steps (``τ_i = update.metrics["local_steps"]``) moved
    further; dividing each update by its own ``τ_i`` and rescaling by the average ``τ``
    removes the bias towards them that a plain mean has. With equal ``τ_i`` it is the
    weighted mean. ``x`` is the round's reference model, ``w_i`` the update's
    ``aggregation_weight``.

    Folded as updates arrive: ``S = Σ c_i y_i`` with ``c_i = w_i / τ_i`` accumulates in
    float64 (BLAS axpy, in place) with the scalars ``C = Σ c_i``,
    ``W = Σ w_i`` and ``T = Σ w_i τ_i``; then ``Σ p_i d_i = (C·x − S) / W`` and the
    result is ``x − (T / W) · (C·x − S) / W``. Integer arrays get the weighted mean,
    rounded. Memory is one float64 accumulator per array.
    """

    def __init__(self) -> None:
        self._reference: Weights = []
        self._sums: list[npt.NDArray[np.float64]] = []
        """One flat accumulator per array of the model."""
        self._shapes: list[tuple[int, ...]] = []
        self._c = self._w = self._t = 0.0
        self._parts: dict[LearnerId, tuple[float, float]] = {}
        self._report = AggregationReport()

    def begin(self, *, reference: Weights, ctx: RoundContext) -> None:
        del ctx
        self._reference = list(reference)
        self._sums = [np.zeros(r.size, dtype=np.float64) for r in reference]
        self._shapes = [r.shape for r in reference]
        self._c = self._w = self._t = 0.0
        self._parts = {}
        self._report = AggregationReport()

    def add(self, update: Update) -> None:
        if update.learner in self._parts:
            raise ValueError(f"an update from {update.learner!r} was already added this round")
        if LOCAL_STEPS not in update.metrics:
            raise ValueError(
                f"update from {update.learner} has no metrics[{LOCAL_STEPS!r}]; FedNova "
                "needs each learner's local step count"
            )
        tau = float(update.metrics[LOCAL_STEPS])
        if not (math.isfinite(tau) and tau >= 1):
            raise ValueError(
                f"update from {update.learner}: metrics[{LOCAL_STEPS!r}] must be >= 1, got {tau}"
            )
        weight = check_weight(update)
        check_shapes(update, self._shapes)
        for ref, total, array in zip(self._reference, self._sums, update.weights, strict=True):
            # Counters are averaged, not normalised: a step count means nothing to them.
            coefficient = weight / tau if ref.dtype.kind == "f" else weight
            add_scaled(total, array, coefficient)
        self._c += weight / tau
        self._w += weight
        self._t += weight * tau
        self._parts[update.learner] = (weight, tau)

    def result(self) -> Weights:
        if not self._parts or self._w <= 0:
            raise ValueError("no updates were added this round; nothing to average")
        tau_eff = self._t / self._w
        out: Weights = []
        for ref, total in zip(self._reference, self._sums, strict=True):
            sums = total.reshape(ref.shape)
            if ref.dtype.kind == "f":
                x = ref.astype(np.float64)
                step = (self._c * x - sums) / self._w
                out.append((x - tau_eff * step).astype(ref.dtype))
            else:
                out.append(np.rint(sums / self._w).astype(ref.dtype))
        # y_i enters the result with coefficient τ_eff · p_i / τ_i (these need not sum to 1).
        self._report = AggregationReport(
            shares={k: tau_eff * (w / self._w) / tau for k, (w, tau) in sorted(self._parts.items())}
        )
        return out

    @property
    def count(self) -> int:
        return len(self._parts)

    @property
    def last_report(self) -> AggregationReport:
        return self._report
