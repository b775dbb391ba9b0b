"""The Aggregator contract, run against every built-in aggregator (like Optuna's
StorageTestCase): one suite, parametrized by name over ``AGGREGATORS``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation._cases import (
    AGGREGATORS,
    BUFFERED,
    CTX,
    MIN_UPDATES,
    ROBUST,
    SHAPES,
    STREAMING,
    fold,
    make_update,
    random_cohort,
)
from fedpilot.aggregation import Mean, RuleAggregator
from fedpilot.types import Weights

ALL = sorted(AGGREGATORS)


@st.composite
def shuffled_cohorts(draw: st.DrawFn) -> tuple[int, float, int, list[int]]:
    size = draw(st.integers(3, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    order = draw(st.permutations(range(size)))
    return seed, scale, size, list(order)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=20, deadline=None)
@given(case=shuffled_cohorts())
def test_arrival_order_does_not_change_the_aggregate(
    name: str, case: tuple[int, float, int, list[int]]
) -> None:
    seed, scale, size, order = case
    reference, cohort = random_cohort(np.random.default_rng(seed), size, scale)
    shuffled = fold(AGGREGATORS[name](), reference, cohort, order)
    in_order = fold(AGGREGATORS[name](), reference, cohort)
    for got, want in zip(shuffled, in_order, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        if name == "fednova":  # float64 sums of τ-scaled terms round differently per order
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale)
        else:  # buffered rules sort rows canonically; the streaming mean sums exactly
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ALL)
def test_same_inputs_same_result_and_reuse_across_rounds(name: str) -> None:
    reference, cohort = random_cohort(np.random.default_rng(1), 7)
    agg = AGGREGATORS[name]()
    first = fold(agg, reference, cohort)
    other_reference, other_cohort = random_cohort(np.random.default_rng(2), 5)
    fold(agg, other_reference, other_cohort)  # a different round in between
    again = fold(agg, reference, cohort)
    fresh = fold(AGGREGATORS[name](), reference, cohort)
    for a, b, c in zip(first, again, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=15, deadline=None)
@given(case=shuffled_cohorts())
def test_result_stays_inside_the_inputs_range(
    name: str, case: tuple[int, float, int, list[int]]
) -> None:
    seed, scale, size, order = case
    reference, cohort = random_cohort(np.random.default_rng(seed), size, scale)
    result = fold(AGGREGATORS[name](), reference, cohort, order)
    for layer, got in enumerate(result):
        points = [w[layer] for _, w, _ in cohort]
        if name == "clipped_mean":  # clipping pulls an update towards the reference
            points.append(reference[layer])
        stacked = np.stack(points)
        slack = 1e-5 * max(float(np.abs(stacked).max()), 1e-30)
        assert np.all(got >= stacked.min(axis=0) - slack)
        assert np.all(got <= stacked.max(axis=0) + slack)


def _attacked_cohort(rng: np.random.Generator) -> tuple[Weights, list[tuple[str, Weights, int]]]:
    """10 honest updates around ``reference + 1`` and 2 huge ones (f = floor(0.2·12) = 2)."""
    reference: Weights = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    honest = [
        (
            f"honest-{i}",
            [(r + 1 + 0.05 * rng.standard_normal(r.shape)).astype(np.float32) for r in reference],
            100,
        )
        for i in range(10)
    ]
    attackers = [
        (f"attacker-{i}", [(r + sign * 1e4).astype(np.float32) for r in reference], 100)
        for i, sign in enumerate((1.0, 1.0))
    ]
    return reference, honest + attackers


@pytest.mark.parametrize("name", [*ROBUST, "mean", "streaming_mean"])
def test_robust_rules_stay_near_the_honest_cluster(name: str) -> None:
    reference, cohort = _attacked_cohort(np.random.default_rng(3))
    result = fold(AGGREGATORS[name](), reference, cohort, order=list(range(11, -1, -1)))
    honest_mean = [np.mean([w[i] for _, w, _ in cohort[:10]], axis=0) for i in range(len(SHAPES))]
    worst = max(float(np.abs(g - h).max()) for g, h in zip(result, honest_mean, strict=True))
    if name in ROBUST:
        assert worst < 0.5
    else:
        assert worst > 100  # two of twelve updates drag the mean by ~1e4 / 6


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_are_clear_errors(name: str) -> None:
    reference = [np.zeros((2, 3), np.float32), np.zeros(4, np.float32)]
    agg = AGGREGATORS[name]()
    agg.begin(reference=reference, ctx=CTX)
    with pytest.raises(ValueError, match="no updates"):
        agg.result()
    with pytest.raises(ValueError, match=r"has 1 arrays, expected 2"):
        agg.add(make_update("a", [np.zeros((2, 3), np.float32)], 1))
    with pytest.raises(ValueError, match=r"array 1 has shape \(5,\), expected \(4,\)"):
        agg.add(make_update("a", [np.zeros((2, 3), np.float32), np.zeros(5, np.float32)], 1))
    with pytest.raises(ValueError, match=r"array 0 has shape \(3, 2\)"):
        agg.add(make_update("a", [np.zeros((3, 2), np.float32), np.zeros(4, np.float32)], 1))
    assert agg.count == 0


@pytest.mark.parametrize("name", BUFFERED)
def test_buffered_rules_reject_duplicates_and_need_begin(name: str) -> None:
    agg = AGGREGATORS[name]()
    with pytest.raises(RuntimeError, match="begin"):
        agg.add(make_update("a", [np.zeros(2, np.float32)], 1))
    agg.begin(reference=[np.zeros(2, np.float32)], ctx=CTX)
    agg.add(make_update("a", [np.ones(2, np.float32)], 1))
    with pytest.raises(ValueError, match="already added"):
        agg.add(make_update("a", [np.ones(2, np.float32)], 1))
    with pytest.raises(ValueError, match="weight"):
        agg.add(make_update("b", [np.ones(2, np.float32)], -1))


@pytest.mark.parametrize("name", BUFFERED)
def test_exclude_drops_a_row(name: str) -> None:
    reference, cohort = random_cohort(np.random.default_rng(4), 6)
    agg = AGGREGATORS[name]()
    agg.begin(reference=reference, ctx=CTX)
    for learner, weights, count in cohort:
        agg.add(make_update(learner, weights, count))
    agg.exclude(cohort[2][0], "norm outlier")
    assert agg.count == 5
    with pytest.raises(ValueError, match="no update from 'nobody'"):
        agg.exclude("nobody", "x")
    got = agg.result()
    want = fold(AGGREGATORS[name](), reference, cohort[:2] + cohort[3:])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    report = agg.last_report
    assert report.excluded == {cohort[2][0]: "norm outlier"}
    assert cohort[2][0] not in report.shares
    assert report.selected is None or cohort[2][0] not in report.selected


@pytest.mark.parametrize("name", sorted(STREAMING))
def test_streaming_aggregators_cannot_exclude(name: str) -> None:
    agg = AGGREGATORS[name]()
    agg.begin(reference=[np.zeros(2, np.float32)], ctx=CTX)
    agg.add(make_update("a", [np.ones(2, np.float32)], 1))
    with pytest.raises(NotImplementedError, match="cannot drop an update"):
        agg.exclude("a", "norm outlier")


@pytest.mark.parametrize("name", ALL)
def test_integer_arrays_get_the_rounded_weighted_mean(name: str) -> None:
    reference = [np.zeros(3, np.float32), np.array([0, 0], dtype=np.int64)]
    counters = [np.array([1, 10]), np.array([2, 11]), np.array([2, 11]), np.array([9, 20])]
    cohort = [
        (f"l{i}", [np.full(3, float(i), np.float32), c], n)
        for i, (c, n) in enumerate(zip(counters, [1, 2, 2, 1], strict=True))
    ]
    result = fold(AGGREGATORS[name](), reference, cohort)
    assert result[1].dtype == np.int64
    np.testing.assert_array_equal(result[1], [3, 12])  # 18 / 6 = 3, 74 / 6 = 12.3
    assert result[0].dtype == np.float32 and result[0].shape == (3,)


@pytest.mark.parametrize("name", ALL)
def test_report_describes_the_last_result(name: str) -> None:
    reference, cohort = random_cohort(np.random.default_rng(5), 6)
    agg = AGGREGATORS[name]()
    assert agg.last_report.shares == {} and agg.last_report.selected is None
    fold(agg, reference, cohort)
    report = agg.last_report
    learners = {learner for learner, _, _ in cohort}
    if report.shares:
        assert set(report.shares) == learners
    if name in {"streaming_mean", "mean", "clipped_mean", "multikrum", "rfa", "krum"}:
        assert sum(report.shares.values()) == pytest.approx(1.0)
    if name in {"median", "trimmed_mean", "bulyan"}:
        assert report.shares == {}
    if name in {"krum", "multikrum", "bulyan"}:
        assert report.selected is not None and set(report.selected) <= learners
        # f = floor(0.2 · 6) = 1, but Bulyan with n = 6 tolerates none (n ≥ 4f + 3).
        assert report.byzantine == {"krum": 1, "multikrum": 1, "bulyan": 0}[name]
        assert len(report.selected) == {"krum": 1, "multikrum": 5, "bulyan": 6}[name]
    else:
        assert report.selected is None and report.byzantine is None
    if name == "clipped_mean":  # the median bound clips about half the cohort
        assert 1 <= len(report.clip_factors) <= 3
        assert all(0 < f < 1 for f in report.clip_factors.values())
    else:
        assert report.clip_factors == {}


@pytest.mark.parametrize("name", sorted(MIN_UPDATES))
def test_too_few_updates_for_the_rule_names_rule_and_n(name: str) -> None:
    reference, cohort = random_cohort(np.random.default_rng(6), 2)
    with pytest.raises(ValueError, match=rf"{name} needs .*f \+ 3.*got n=2"):
        fold(AGGREGATORS[name](), reference, cohort)


def test_buffer_file_is_gone_after_close_and_next_begin(tmp_path: Path) -> None:
    agg = RuleAggregator(Mean(), workdir=tmp_path)
    reference = [np.zeros(4, np.float32)]
    agg.begin(reference=reference, ctx=CTX)
    agg.add(make_update("a", [np.ones(4, np.float32)], 1))
    buffer = agg._buffer
    assert buffer is not None
    agg.begin(reference=reference, ctx=CTX)
    assert buffer._file.closed
    agg.add(make_update("a", [np.ones(4, np.float32)], 1))
    np.testing.assert_array_equal(agg.result()[0], np.ones(4, np.float32))
    agg.close()
    agg.close()  # idempotent
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="begin"):
        agg.result()


def test_float64_and_float16_models_keep_their_dtypes() -> None:
    reference = [np.linspace(0, 1, 5, dtype=np.float64), np.ones(3, np.float16)]
    cohort = [
        ("a", [reference[0] + 1e-9, np.full(3, 2, np.float16)], 1),
        ("b", [reference[0] + 3e-9, np.full(3, 4, np.float16)], 1),
    ]
    result = fold(RuleAggregator(Mean()), reference, cohort)
    assert [r.dtype for r in result] == [np.float64, np.float16]
    # The delta is stored in float32, so a float64 model keeps its own large part exactly.
    np.testing.assert_allclose(result[0], reference[0] + 2e-9, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(result[1], np.full(3, 3, np.float16))
