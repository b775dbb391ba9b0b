from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedpilot.types import Reply
from fedpilot.validation import UpdateValidator
from fedpilot.validation.checks import far_above

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


# -- defaults that refuse what no honest learner sends (issue 13) ----------------------


def test_the_default_spec_turns_the_ratio_checks_on() -> None:
    from fedpilot.spec.sections import ValidationSpec

    spec = ValidationSpec()
    assert spec.max_norm_ratio is not None and spec.max_examples_ratio is not None


@pytest.mark.parametrize("cohort", [2, 3, 5, 50])
def test_a_norm_far_above_the_others_is_refused_in_cohorts_of_any_size(cohort: int) -> None:
    validator = UpdateValidator(max_norm_ratio=10.0)
    # Non-IID learners: norms spread over 4x; learner "bad" sends 50x the median.
    norms = {str(i): 1.0 + 3.0 * i / max(1, cohort - 2) for i in range(cohort - 1)}
    norms["bad"] = 50.0 * float(np.median(list(norms.values())))
    outliers = validator.cohort_outliers(norms)
    assert set(outliers) == {"bad"}
    assert "validation.max_norm_ratio=10" in outliers["bad"]
    assert "median of the other updates' norms" in outliers["bad"]


def test_the_ratio_checks_leave_honest_spread_and_nothing_to_compare_with_alone() -> None:
    validator = UpdateValidator(max_norm_ratio=10.0, max_examples_ratio=100.0)
    assert validator.cohort_outliers({str(i): 1.0 + i for i in range(8)}) == {}  # 8x spread
    assert validator.cohort_outliers({"a": 1e9}, {"a": 10**12}) == {}  # one update: no scale
    # Everyone else sent back the model unchanged: there is no scale to judge by.
    assert validator.cohort_outliers({"a": 0.0, "b": 0.0, "c": 3.0}) == {}


def test_an_undeclared_num_examples_far_above_the_others_is_refused() -> None:
    validator = UpdateValidator(max_examples_ratio=100.0, declared_examples={"big": 10**6})
    claims = {"0": 10**12, "1": 288, "2": 290, "3": 300, "4": 250, "big": 10**6}
    outliers = validator.cohort_outliers({}, claims)
    # A declared size bounds a claim already (check()): "big" says what it has.
    assert set(outliers) == {"0"}
    assert "`num-examples`=1000000000000 is implausible" in outliers["0"]
    assert "validation.max_examples_ratio=100" in outliers["0"]


@pytest.mark.parametrize(
    ("n", "metrics", "reason"),
    [
        (10**12, {"accuracy": 1.0}, None),  # plausible alone; the cohort check refuses it
        (0, {"accuracy": 0.5}, "positive integer"),
        (None, {"accuracy": 0.5}, "positive integer"),
        (2.5, {"accuracy": 0.5}, "positive integer"),
        (10, {"accuracy": 1.5}, "must be in [0, 1]"),
        (10, {"val_accuracy": -0.1}, "must be in [0, 1]"),
        (10, {"loss": float("nan")}, "not finite"),
        (10, {"accuracy": float("inf")}, "not finite"),
        (10, {"loss": 3.0, "accuracy": 0.9}, None),
    ],
)
def test_evaluation_replies_are_checked_like_updates(
    n: object, metrics: dict[str, float], reason: str | None
) -> None:
    got = UpdateValidator().check_evaluation(
        Reply(learner="0", kind="evaluate", metrics=metrics, num_examples=n)  # type: ignore[arg-type]
    )
    if reason is None:
        assert got.ok
    else:
        assert not got.ok and got.reason is not None and reason in got.reason


@given(
    st.lists(
        st.one_of(st.integers(0, 5).map(float), st.floats(0, 1e12, allow_nan=False)),
        min_size=2,
        max_size=30,
    ),
    st.floats(1.01, 200),
)
def test_far_above_is_each_entry_against_the_median_of_the_others(
    values: list[float], ratio: float
) -> None:
    named = {str(i): v for i, v in enumerate(values)}
    want = {}
    for i, key in enumerate(named):
        others = float(np.median(np.delete(np.array(values), i)))
        if others > 0 and values[i] > ratio * others:
            want[key] = (values[i], others)
    got = far_above(named, ratio)
    assert got.keys() == want.keys()
    for key, (value, others) in got.items():
        assert (value, others) == pytest.approx(want[key])
