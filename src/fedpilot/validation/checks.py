"""Is this update sane? Checks run before an update is folded into the aggregate."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from fedpilot._blas import all_finite
from fedpilot.types import LearnerId, Reply, Weights

# Scales the median absolute deviation to a standard deviation for normal data.
_MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class Validation:
    """``reason`` is None when the update may be folded in."""

    reason: str | None
    num_examples: int = 0
    delta_norm: float | None = None
    """‖update − global‖ when the validator measures norms (cohort checks on)."""

    @property
    def ok(self) -> bool:
        return self.reason is None


class UpdateValidator:
    """Per update: shape and dtype match the global model, every value is finite,
    ``num-examples`` is a positive integer no larger than what is plausible, and the
    metrics the strategy needs are there. Per round (``norm_outlier_z``): no update's
    norm is an outlier in its cohort.

    Args:
        max_examples: Largest plausible ``num-examples`` for anyone.
        declared_examples: Each learner's declared data size; a claim above it is
            implausible.
        required_metrics: Metric names the strategy reads (FedNova's ``local_steps``).
        norm_outlier_z: Robust z-score above which a delta norm is an outlier.
    """

    def __init__(
        self,
        *,
        max_examples: int | None = None,
        declared_examples: Mapping[LearnerId, int | None] | None = None,
        required_metrics: Collection[str] = (),
        norm_outlier_z: float | None = None,
    ) -> None:
        self.max_examples = max_examples
        self.declared_examples = dict(declared_examples or {})
        self.required_metrics = tuple(required_metrics)
        self.norm_outlier_z = norm_outlier_z

    @property
    def has_cohort_checks(self) -> bool:
        """Whether :meth:`cohort_outliers` may reject updates (they must stay removable)."""
        return self.norm_outlier_z is not None

    def check(self, reply: Reply, reference: Weights) -> Validation:
        num_examples = _positive_int(reply.num_examples)
        if num_examples is None:
            return Validation(
                f"`num-examples` must be a positive integer, got {reply.num_examples!r}"
            )
        if self.max_examples is not None and num_examples > self.max_examples:
            return Validation(
                f"`num-examples`={num_examples} is implausible: above "
                f"validation.max_examples={self.max_examples}"
            )
        declared = self.declared_examples.get(reply.learner)
        if declared is not None and num_examples > declared:
            return Validation(
                f"`num-examples`={num_examples} is implausible: learner {reply.learner} "
                f"declared {declared} examples"
            )
        for name in self.required_metrics:
            value = reply.metrics.get(name)
            if value is None or not math.isfinite(value) or value <= 0:
                return Validation(
                    f"the strategy needs a positive metric `{name}`, got {name}={value!r}"
                )
        if len(reply.weights) != len(reference):
            return Validation(
                f"update has {len(reply.weights)} arrays, the global model has {len(reference)}"
            )
        for index, (got, want) in enumerate(zip(reply.weights, reference, strict=True)):
            if got.shape != want.shape:
                return Validation(
                    f"array {index} has shape {got.shape}, the global model's is {want.shape}"
                )
            if got.dtype != want.dtype:
                return Validation(
                    f"array {index} has dtype {got.dtype}, the global model's is {want.dtype}"
                )
            if not all_finite(got):
                bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
                return Validation(f"array {index} has {bad} non-finite values (NaN or inf)")
        norm = _delta_norm(reply.weights, reference) if self.has_cohort_checks else None
        return Validation(None, num_examples, norm)

    def cohort_outliers(self, norms: Mapping[LearnerId, float]) -> dict[LearnerId, str]:
        """Learners whose delta norm is an outlier among ``norms`` (robust z-score:
        (norm − median) / (1.4826 · MAD)), with the reason. Needs 3 or more norms."""
        if self.norm_outlier_z is None or len(norms) < 3:
            return {}
        values = np.array(list(norms.values()), dtype=np.float64)
        median = float(np.median(values))
        spread = _MAD_TO_STD * float(np.median(np.abs(values - median)))
        # Identical norms (MAD 0) would make any difference infinitely unusual; fall back
        # to a small share of the median so only real departures count.
        spread = max(spread, 1e-3 * abs(median), 1e-12)
        out: dict[LearnerId, str] = {}
        for learner, norm in norms.items():
            z = (norm - median) / spread
            if z > self.norm_outlier_z:
                out[learner] = (
                    f"update norm {norm:.4g} is an outlier in its cohort: robust z-score "
                    f"{z:.1f} > validation.norm_outlier_z={self.norm_outlier_z} "
                    f"(cohort median {median:.4g})"
                )
        return out


def _delta_norm(weights: Weights, reference: Weights) -> float:
    total = 0.0
    for got, want in zip(weights, reference, strict=True):
        if got.dtype.kind == "f":
            diff = got.astype(np.float64) - want.astype(np.float64)
            total += float(np.dot(diff.ravel(), diff.ravel()))
    return math.sqrt(total)


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value) if value > 0 else None
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and value > 0:
        return int(value)
    return None
