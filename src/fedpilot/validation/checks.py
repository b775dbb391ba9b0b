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
    """Per update: shape and dtype match the global model, every value and metric is finite,
    ``num-examples`` is a positive integer no larger than what is plausible, and the
    metrics the strategy needs are there. Per round (:meth:`cohort_outliers`): no update's
    delta norm, and no undeclared learner's ``num-examples``, is far above the others'.

    Args:
        max_examples: Largest plausible ``num-examples`` for anyone.
        declared_examples: Each learner's declared data size; a claim above it is
            implausible.
        required_metrics: Metric names the strategy reads (FedNova's ``local_steps``).
        norm_outlier_z: Robust z-score above which a delta norm is an outlier.
        max_norm_ratio: A delta norm above this many times the median of the other
            updates' in the round is refused.
        max_examples_ratio: A ``num-examples`` claim above this many times the median of
            the others' claims is refused, unless the learner's size is declared (then
            the declared size bounds it).
    """

    def __init__(
        self,
        *,
        max_examples: int | None = None,
        declared_examples: Mapping[LearnerId, int | None] | None = None,
        required_metrics: Collection[str] = (),
        norm_outlier_z: float | None = None,
        max_norm_ratio: float | None = None,
        max_examples_ratio: float | None = None,
    ) -> None:
        self.max_examples = max_examples
        self.declared_examples = dict(declared_examples or {})
        self.required_metrics = tuple(required_metrics)
        self.norm_outlier_z = norm_outlier_z
        self.max_norm_ratio = max_norm_ratio
        self.max_examples_ratio = max_examples_ratio

    @property
    def has_cohort_checks(self) -> bool:
        """Whether :meth:`cohort_outliers` may reject updates (they must stay removable)."""
        return (
            self.norm_outlier_z is not None
            or self.max_norm_ratio is not None
            or self.max_examples_ratio is not None
        )

    def _plausible_examples(self, raw: object, what: str) -> tuple[int | None, str | None]:
        """``raw`` as a ``num-examples`` count, or None and why it is refused (``what``
        prefixes the message: "" for an update, "evaluation " for an evaluation)."""
        num_examples = _positive_int(raw)
        if num_examples is None:
            return None, f"{what}`num-examples` must be a positive integer, got {raw!r}"
        if self.max_examples is not None and num_examples > self.max_examples:
            return None, (
                f"{what}`num-examples`={num_examples} is implausible: above "
                f"validation.max_examples={self.max_examples}"
            )
        return num_examples, None

    def check(self, reply: Reply, reference: Weights) -> Validation:
        num_examples, problem = self._plausible_examples(reply.num_examples, "")
        if num_examples is None:
            return Validation(problem)
        declared = self.declared_examples.get(reply.learner)
        if declared is not None and num_examples > declared:
            return Validation(
                f"`num-examples`={num_examples} is implausible: learner {reply.learner} "
                f"declared {declared} examples"
            )
        for name, reported in reply.metrics.items():
            if not math.isfinite(reported):
                return Validation(f"metric `{name}` is not finite, got {reported!r}")
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

    def check_evaluation(self, reply: Reply) -> Validation:
        """An evaluation reply: a plausible ``num-examples`` (as for an update) and
        model metrics that are finite, shares (``accuracy``, ``f1``, …) within [0, 1]."""
        num_examples, problem = self._plausible_examples(reply.num_examples, "evaluation ")
        if num_examples is None:
            return Validation(problem)
        for name, value in reply.metrics.items():
            if not math.isfinite(value):
                return Validation(f"evaluation metric `{name}` is not finite, got {value!r}")
            if _unit_metric(name) and not 0.0 <= value <= 1.0:
                return Validation(
                    f"evaluation metric `{name}` is a share and must be in [0, 1], got {value!r}"
                )
        return Validation(None, num_examples)

    def cohort_outliers(
        self, norms: Mapping[LearnerId, float], claims: Mapping[LearnerId, int] | None = None
    ) -> dict[LearnerId, str]:
        """Learners whose update is far out of line with the rest of its round, with the
        reason: a delta norm (``norms``) or an undeclared ``num-examples`` claim
        (``claims``) above the ratio times the median of the others', or a delta norm
        whose robust z-score ((norm − median) / (1.4826 · MAD), 3 or more norms) is above
        ``norm_outlier_z``."""
        out: dict[LearnerId, str] = {}
        if self.norm_outlier_z is not None and len(norms) >= 3:
            values = np.array(list(norms.values()), dtype=np.float64)
            median = float(np.median(values))
            spread = _MAD_TO_STD * float(np.median(np.abs(values - median)))
            # Identical norms (MAD 0) would make any difference infinitely unusual; fall
            # back to a small share of the median so only real departures count.
            spread = max(spread, 1e-3 * abs(median), 1e-12)
            for learner, norm in norms.items():
                z = (norm - median) / spread
                if z > self.norm_outlier_z:
                    out[learner] = (
                        f"update norm {norm:.4g} is an outlier in its cohort: robust z-score "
                        f"{z:.1f} > validation.norm_outlier_z={self.norm_outlier_z} "
                        f"(cohort median {median:.4g})"
                    )
        if self.max_norm_ratio is not None:
            for learner, (norm, others) in far_above(norms, self.max_norm_ratio).items():
                out.setdefault(
                    learner,
                    f"update norm {norm:.4g} is more than validation.max_norm_ratio="
                    f"{self.max_norm_ratio:g} times the median of the other updates' norms "
                    f"this round ({others:.4g})",
                )
        if self.max_examples_ratio is not None and claims:
            for learner, (claim, others) in far_above(claims, self.max_examples_ratio).items():
                if self.declared_examples.get(learner) is None:
                    out.setdefault(
                        learner,
                        f"`num-examples`={int(claim)} is implausible: more than "
                        f"validation.max_examples_ratio={self.max_examples_ratio:g} times the "
                        f"median of the other learners' claims this round ({others:g})",
                    )
        return out


def far_above(
    values: Mapping[LearnerId, float], ratio: float
) -> dict[LearnerId, tuple[float, float]]:
    """The entries more than ``ratio`` times the median of the *other* entries, as
    (value, that median). Leaving each one out of its own median keeps a cohort of two
    judgeable, and one huge value cannot drag the median up to hide itself. An entry
    whose others' median is 0 (they all sent nothing) is not judged: there is no scale."""
    if len(values) < 2:
        return {}
    keys = list(values)
    given = np.array([float(values[k]) for k in keys], dtype=np.float64)
    # The median of the others from one sort: without the entry of rank r, position j of
    # the rest is sorted[j] below r and sorted[j + 1] from r on.
    order = np.argsort(given, kind="stable")
    ordered = given[order]
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    rest = len(keys) - 1
    low, high = (rest - 1) // 2, rest // 2
    others = (
        np.where(low < rank, ordered[low], ordered[low + 1])
        + np.where(high < rank, ordered[high], ordered[high + 1])
    ) / 2
    out: dict[LearnerId, tuple[float, float]] = {}
    for i, learner in enumerate(keys):
        if others[i] > 0 and given[i] > ratio * others[i]:
            out[learner] = (float(given[i]), float(others[i]))
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


# Metrics that are shares of a test set: a value outside [0, 1] is not a measurement.
_UNIT_METRICS = ("accuracy", "precision", "recall", "f1", "auc")


def _unit_metric(name: str) -> bool:
    return any(name == unit or name.endswith(("_" + unit, "-" + unit)) for unit in _UNIT_METRICS)
