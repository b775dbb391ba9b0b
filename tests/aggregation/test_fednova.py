"""FedNova's normalised averaging."""

from __future__ import annotations

import numpy as np
import pytest

from aggregation._cases import CTX, random_cohort
from fedpilot.aggregation import FedNovaMean, WeightedMean
from fedpilot.types import Update


def test_one_hand_computed_round() -> None:
    # p = (1/4, 3/4); d = ((0−y1)/1, (0−y2)/4) = ((−2, −4), (−1, 0)); Σ p d = (−1.25, −1);
    # τ_eff = 1/4·1 + 3/4·4 = 3.25; result = 0 − 3.25·(−1.25, −1) = (4.0625, 3.25).
    agg = FedNovaMean()
    agg.begin(reference=[np.zeros(2, np.float32), np.array([10])], ctx=CTX)
    agg.add(Update("a", [np.array([2.0, 4.0], np.float32), np.array([12])], 1, {"local_steps": 1}))
    agg.add(Update("b", [np.array([4.0, 0.0], np.float32), np.array([20])], 3, {"local_steps": 4}))
    result = agg.result()
    np.testing.assert_allclose(result[0], [4.0625, 3.25], rtol=1e-7)
    assert result[0].dtype == np.float32
    np.testing.assert_array_equal(result[1], [18])  # counters: (12 + 60) / 4
    assert agg.last_report.shares == pytest.approx({"a": 0.8125, "b": 0.609375})
    assert agg.count == 2


def test_equal_step_counts_give_the_weighted_mean() -> None:
    reference, cohort = random_cohort(np.random.default_rng(0), 6)
    nova, mean = FedNovaMean(), WeightedMean(order_independent=True)
    for agg in (nova, mean):
        agg.begin(reference=reference, ctx=CTX)
        for learner, weights, count in cohort:
            agg.add(Update(learner, weights, count, {"local_steps": 7}))
    for a, b in zip(nova.result(), mean.result(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_progress_is_averaged_per_local_step() -> None:
    # Equal data; "slow" moved 1 in 1 step, "fast" moved 4 in 10 steps (0.4 per step).
    # The plain mean is 2.5; FedNova averages per-step progress, (1 + 0.4) / 2 = 0.7, and
    # scales it by τ_eff = (1 + 10) / 2 = 5.5: 3.85.
    agg = FedNovaMean()
    agg.begin(reference=[np.zeros(1, np.float64)], ctx=CTX)
    agg.add(Update("slow", [np.array([1.0])], 1, {"local_steps": 1}))
    agg.add(Update("fast", [np.array([4.0])], 1, {"local_steps": 10}))
    np.testing.assert_allclose(agg.result()[0], [3.85])


def test_missing_or_bad_local_steps_are_clear_errors() -> None:
    agg = FedNovaMean()
    agg.begin(reference=[np.zeros(2, np.float32)], ctx=CTX)
    with pytest.raises(ValueError, match=r"no metrics\['local_steps'\]"):
        agg.add(Update("a", [np.ones(2, np.float32)], 1))
    with pytest.raises(ValueError, match=r"must be >= 1, got 0.5"):
        agg.add(Update("a", [np.ones(2, np.float32)], 1, {"local_steps": 0.5}))
    agg.add(Update("a", [np.ones(2, np.float32)], 1, {"local_steps": 2}))
    with pytest.raises(ValueError, match="already added"):
        agg.add(Update("a", [np.ones(2, np.float32)], 1, {"local_steps": 2}))
