from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedpilot.aggregation import FedAvgStep, WeightedMean
from fedpilot.types import RoundContext, Update

CTX = RoundContext(run_id="t", round=1, total_rounds=1, seed=0)
SHAPES = [(3, 4), (4,), ()]


@st.composite
def cohorts(draw: st.DrawFn) -> tuple[list[list[np.ndarray]], list[int], list[int]]:
    size = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    updates = [
        [(rng.standard_normal(s) * scale).astype(np.float32) for s in SHAPES] for _ in range(size)
    ]
    counts = draw(st.lists(st.integers(1, 10_000), min_size=size, max_size=size))
    order = draw(st.permutations(range(size)))
    return updates, counts, list(order)


def fold(
    updates: list[list[np.ndarray]],
    counts: list[int],
    order: list[int],
    order_independent: bool = True,
) -> list[np.ndarray]:
    agg = WeightedMean(order_independent=order_independent)
    agg.begin(reference=updates[0], ctx=CTX)
    for i in order:
        agg.add(Update(str(i), updates[i], counts[i]))
    return agg.result()


@settings(max_examples=80, deadline=None)
@given(cohorts(), st.booleans())
def test_equals_numpy_reference_in_any_order(cohort: tuple, exact: bool) -> None:  # type: ignore[type-arg]
    updates, counts, order = cohort
    result = fold(updates, counts, order, order_independent=exact)
    tolerance = 1e-6 if exact else 1e-5  # float32 sums round at every step
    for layer, got in enumerate(result):
        stacked = np.stack([u[layer].astype(np.float64) for u in updates])
        want = np.average(stacked, axis=0, weights=np.array(counts, dtype=np.float64))
        assert got.dtype == np.float32
        assert got.shape == want.shape
        np.testing.assert_allclose(
            got, want, rtol=tolerance, atol=tolerance * np.abs(stacked).max()
        )
    if exact:  # then arrival order must not change the float32 result at all
        in_order = fold(updates, counts, sorted(order))
        for a, b in zip(result, in_order, strict=True):
            np.testing.assert_array_equal(a, b)


def test_read_only_and_strided_updates_are_folded() -> None:
    ref = [np.zeros((2, 3), np.float32)]
    source = np.arange(12, dtype=np.float32).reshape(2, 6)[:, ::2]  # not contiguous
    frozen = np.ones((2, 3), np.float32)
    frozen.setflags(write=False)
    agg = WeightedMean()
    agg.begin(reference=ref, ctx=CTX)
    agg.add(Update("a", [source], 1))
    agg.add(Update("b", [frozen], 1))
    np.testing.assert_allclose(agg.result()[0], (source + frozen) / 2)


@settings(max_examples=40, deadline=None)
@given(cohorts())
def test_weighted_mean_stays_inside_inputs_range(cohort: tuple) -> None:  # type: ignore[type-arg]
    updates, counts, order = cohort
    for layer, got in enumerate(fold(updates, counts, order)):
        stacked = np.stack([u[layer] for u in updates])
        assert np.all(got >= stacked.min(axis=0) - 1e-6 * np.abs(stacked).max())
        assert np.all(got <= stacked.max(axis=0) + 1e-6 * np.abs(stacked).max())


def test_buffers_are_reused_and_reset_between_rounds() -> None:
    ref = [np.zeros(5, np.float32)]
    agg = WeightedMean()
    agg.begin(reference=ref, ctx=CTX)
    agg.add(Update("a", [np.ones(5, np.float32)], 3))
    assert agg.count == 1
    agg.begin(reference=ref, ctx=CTX)
    agg.add(Update("b", [np.full(5, 2.0, np.float32)], 1))
    np.testing.assert_array_equal(agg.result()[0], np.full(5, 2.0, np.float32))


def test_integer_buffers_round_to_nearest() -> None:
    ref = [np.zeros(2, np.int64)]
    agg = WeightedMean()
    agg.begin(reference=ref, ctx=CTX)
    agg.add(Update("a", [np.array([1, 10])], 1))
    agg.add(Update("b", [np.array([2, 11])], 2))
    np.testing.assert_array_equal(agg.result()[0], np.array([2, 11]))
    assert agg.result()[0].dtype == np.int64


def test_empty_round_and_wrong_arity_are_clear_errors() -> None:
    agg = WeightedMean()
    agg.begin(reference=[np.zeros(2, np.float32)], ctx=CTX)
    with pytest.raises(ValueError, match="no updates"):
        agg.result()
    with pytest.raises(ValueError, match="expected 1"):
        agg.add(Update("x", [np.zeros(2, np.float32), np.zeros(1, np.float32)], 1))


def test_fedavg_step_moves_by_server_lr() -> None:
    current = [np.zeros(3, np.float32), np.array([5])]
    aggregate = [np.ones(3, np.float32), np.array([7])]
    full = FedAvgStep(1.0).step(current=current, aggregate=aggregate)
    np.testing.assert_array_equal(full[0], aggregate[0])
    half = FedAvgStep(0.5).step(current=current, aggregate=aggregate)
    np.testing.assert_allclose(half[0], 0.5)
    assert half[0].dtype == np.float32
    np.testing.assert_array_equal(half[1], aggregate[1])
    with pytest.raises(ValueError, match="server_lr"):
        FedAvgStep(0)
