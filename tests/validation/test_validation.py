from __future__ import annotations

import numpy as np
import pytest

from fedpilot.types import Reply
from fedpilot.validation import UpdateValidator

REF = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]


def reply(weights: list[np.ndarray], n: object = 10) -> Reply:
    return Reply(learner="0", kind="train", weights=weights, num_examples=n)  # type: ignore[arg-type]


def test_sane_update_passes() -> None:
    check = UpdateValidator().check(reply([a + 1 for a in REF]), REF)
    assert check.ok and check.num_examples == 10


@pytest.mark.parametrize(
    ("weights", "n", "reason"),
    [
        ([np.zeros((3, 2), np.float32), REF[1]], 10, "shape"),
        ([REF[0].astype(np.float64), REF[1]], 10, "dtype"),
        ([REF[0]], 10, "1 arrays"),
        ([np.full((2, 3), np.nan, np.float32), REF[1]], 10, "6 non-finite"),
        ([REF[0], np.array([0, np.inf, 0], np.float32)], 10, "non-finite"),
        (REF, 0, "positive integer"),
        (REF, -3, "positive integer"),
        (REF, 2.5, "positive integer"),
        (REF, True, "positive integer"),
        (REF, None, "positive integer"),
        (REF, "10", "positive integer"),
    ],
)
def test_bad_updates_are_rejected_with_reason(weights: list, n: object, reason: str) -> None:  # type: ignore[type-arg]
    check = UpdateValidator().check(reply(weights, n), REF)
    assert not check.ok
    assert check.reason is not None and reason in check.reason


def test_large_finite_values_whose_sum_overflows_are_finite() -> None:
    big = np.finfo(np.float32).max / 2
    weights = [np.full((2, 3), big, np.float32), np.full(3, -big, np.float32)]
    assert UpdateValidator().check(reply(weights), REF).ok


def test_integral_float_count_is_accepted() -> None:
    assert UpdateValidator().check(reply(REF, 12.0), REF).num_examples == 12


def test_claims_above_the_global_cap_or_the_declared_size_are_implausible() -> None:
    validator = UpdateValidator(max_examples=100, declared_examples={"0": 40})
    capped = validator.check(reply(REF, 101), REF)
    assert not capped.ok and "validation.max_examples=100" in (capped.reason or "")
    declared = validator.check(reply(REF, 41), REF)
    assert not declared.ok and "declared 40" in (declared.reason or "")
    assert validator.check(reply(REF, 40), REF).ok


def test_a_metric_the_strategy_needs_must_be_there() -> None:
    validator = UpdateValidator(required_metrics=("local_steps",))
    missing = validator.check(reply(REF), REF)
    assert not missing.ok and "local_steps" in (missing.reason or "")
    good = Reply(learner="0", kind="train", weights=REF, num_examples=5, metrics={"local_steps": 3})
    assert validator.check(good, REF).ok


def test_norm_outliers_are_found_in_the_cohort_with_a_reason() -> None:
    validator = UpdateValidator(norm_outlier_z=3.5)
    assert validator.has_cohort_checks
    check = validator.check(reply([a + 1 for a in REF]), REF)
    assert check.delta_norm == pytest.approx(3.0)  # sqrt(9 ones)
    norms = {str(i): 1.0 + 0.01 * i for i in range(9)} | {"bad": 50.0}
    outliers = validator.cohort_outliers(norms)
    assert set(outliers) == {"bad"}
    assert "robust z-score" in outliers["bad"] and "norm_outlier_z=3.5" in outliers["bad"]


def test_identical_norms_have_no_outliers_and_small_cohorts_are_not_judged() -> None:
    validator = UpdateValidator(norm_outlier_z=3.0)
    assert validator.cohort_outliers({str(i): 2.0 for i in range(6)}) == {}
    assert validator.cohort_outliers({"a": 1.0, "b": 100.0}) == {}
    assert UpdateValidator().cohort_outliers({"a": 1.0, "b": 1.0, "c": 99.0}) == {}
