"""Update-norm bounding: every delta a rule sees is at most the bound long."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation._cases import fold, random_cohort
from fedpilot.aggregation import AggregationRule, Mean, Median, RuleAggregator, RuleOutcome
from fedpilot.aggregation.clip import clip_factors, norm_bound
from fedpilot.aggregation.rules import Rows
from fedpilot.spec.aggregation import NormClipSpec


class RowNorms(AggregationRule):
    """Records the L2 norm of every row the rule is given, then takes the mean."""

    def __init__(self) -> None:
        self.norms: npt.NDArray[np.float64] = np.zeros(0)
        self.combined: npt.NDArray[np.float32] = np.zeros(0, np.float32)

    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        squared = np.zeros(rows.n)
        for _, block in rows.chunks():
            squared += (block.astype(np.float64) ** 2).sum(axis=1)
        self.norms = np.sqrt(squared)
        outcome = Mean().combine(rows, out)
        self.combined = out.copy()
        return outcome


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(1, 8),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    bound=st.floats(1e-3, 1e4),
)
def test_clipped_delta_norms_are_at_most_the_bound(
    seed: int, size: int, scale: float, bound: float
) -> None:
    reference, cohort = random_cohort(np.random.default_rng(seed), size, scale)
    rule = RowNorms()
    agg = RuleAggregator(rule, clip=NormClipSpec(bound=bound), chunk_size=5)
    fold(agg, reference, cohort)
    assert np.all(rule.norms <= bound * (1 + 1e-5))
    # The mean of vectors no longer than the bound is no longer than it either. (Checked
    # on the combined delta: reference + delta rounds to the model's float32 grid.)
    assert float(np.linalg.norm(rule.combined.astype(np.float64))) <= bound * (1 + 1e-5)
    # Updates that were short enough are untouched; the report lists the others.
    raw = agg.delta_norms()
    assert set(agg.last_report.clip_factors) == {k for k, v in raw.items() if v > bound}
    for learner, factor in agg.last_report.clip_factors.items():
        assert factor == pytest.approx(bound / raw[learner])


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    size=st.integers(1, 9),
    quantile=st.floats(0.05, 1.0),
)
def test_quantile_bound_comes_from_the_cohort(seed: int, size: int, quantile: float) -> None:
    reference, cohort = random_cohort(np.random.default_rng(seed), size)
    rule = RowNorms()
    agg = RuleAggregator(rule, clip=NormClipSpec(quantile=quantile), chunk_size=5)
    fold(agg, reference, cohort)
    raw = np.array(list(agg.delta_norms().values()))
    bound = float(np.quantile(raw, quantile))
    assert np.all(rule.norms <= bound * (1 + 1e-5))
    assert len(agg.last_report.clip_factors) == int(np.sum(raw > bound))


def test_quantile_one_clips_nothing_and_zero_deltas_are_left_alone() -> None:
    reference, cohort = random_cohort(np.random.default_rng(0), 5)
    agg = RuleAggregator(Mean(), clip=NormClipSpec(quantile=1.0))
    plain = fold(RuleAggregator(Mean()), reference, cohort)
    for a, b in zip(fold(agg, reference, cohort), plain, strict=True):
        np.testing.assert_array_equal(a, b)
    assert agg.last_report.clip_factors == {}
    norms = np.array([0.0, 1.0, 4.0])
    np.testing.assert_array_equal(clip_factors(norms, 2.0), [1.0, 1.0, 0.5])
    assert norm_bound(norms, NormClipSpec(quantile=0.5)) == 1.0
    assert norm_bound(norms, NormClipSpec(bound=3.0)) == 3.0


def test_clipping_runs_before_the_rule() -> None:
    reference = [np.zeros(2, np.float32)]
    cohort = [
        ("a", [np.array([3.0, 4.0], np.float32)], 1),  # norm 5 → scaled to norm 1
        ("b", [np.array([0.3, 0.4], np.float32)], 1),  # norm 0.5, untouched
        ("c", [np.array([30.0, 40.0], np.float32)], 1),  # norm 50 → scaled to norm 1
    ]
    agg = RuleAggregator(Median(), clip=NormClipSpec(bound=1.0))
    np.testing.assert_allclose(fold(agg, reference, cohort)[0], [0.6, 0.8], rtol=1e-6)
    assert agg.last_report.clip_factors == pytest.approx({"a": 0.2, "c": 0.02})


@pytest.mark.parametrize("quantile", [0.3, 0.8])
def test_clipped_mean_matches_clip_then_average(quantile: float) -> None:
    reference, cohort = random_cohort(np.random.default_rng(9), 8)
    agg = RuleAggregator(Mean(), clip=NormClipSpec(quantile=quantile), chunk_size=4)
    result = fold(agg, reference, cohort)
    ordered = sorted(cohort)
    rows = np.stack(
        [
            np.concatenate([(u - r).ravel() for u, r in zip(w, reference, strict=True)])
            for _, w, _ in ordered
        ]
    ).astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    rows *= np.minimum(1.0, np.quantile(norms, quantile) / norms)[:, None]
    want = np.average(rows, axis=0, weights=[c for _, _, c in ordered])
    got = np.concatenate([(g - r).ravel() for g, r in zip(result, reference, strict=True)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
