"""The ServerOptimizer contract over every built-in optimizer, and one hand-computed step each."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fedpilot.aggregation import (
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedAvgStep,
    FedYogi,
    ServerOptimizer,
    build_server_optimizer,
)
from fedpilot.spec.sections import (
    FedAdagradStrategy,
    FedAdamStrategy,
    FedAvgMStrategy,
    FedAvgStrategy,
    FedNovaStrategy,
    FedProxStrategy,
    FedYogiStrategy,
    ScaffoldStrategy,
)
from fedpilot.types import Weights

OPTIMIZERS: dict[str, Callable[[], ServerOptimizer]] = {
    "fedavg": lambda: FedAvgStep(0.7),
    "fedavgm": lambda: FedAvgM(server_lr=0.5, momentum=0.9),
    "fedadam": lambda: FedAdam(0.1, beta1=0.9, beta2=0.99, tau=1e-2),
    "fedyogi": lambda: FedYogi(0.1, beta1=0.9, beta2=0.99, tau=1e-2),
    "fedadagrad": lambda: FedAdagrad(0.1, beta1=0.5, tau=1e-2),
}


def _rounds(seed: int, count: int) -> list[Weights]:
    """Aggregates of ``count`` rounds: a float32 matrix, a float64 vector and a counter."""
    rng = np.random.default_rng(seed)
    return [
        [
            rng.standard_normal((3, 2)).astype(np.float32),
            rng.standard_normal(4),
            np.array([r], dtype=np.int64),
        ]
        for r in range(count)
    ]


def _start() -> Weights:
    return [np.zeros((3, 2), np.float32), np.zeros(4), np.array([0], dtype=np.int64)]


def _run(opt: ServerOptimizer, current: Weights, aggregates: list[Weights]) -> Weights:
    for aggregate in aggregates:
        current = opt.step(current=current, aggregate=aggregate)
    return current


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_checkpoint_round_trip_continues_bit_identically(name: str) -> None:
    aggregates = _rounds(0, 6)
    straight = _run(OPTIMIZERS[name](), _start(), aggregates)

    first = OPTIMIZERS[name]()
    halfway = _run(first, _start(), aggregates[:3])
    state = first.state_dict()
    # What a checkpoint keeps: arrays (saved as .npz) and JSON scalars.
    assert all(isinstance(v, np.ndarray | int | float) for v in state.values())
    saved = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    resumed = OPTIMIZERS[name]()
    resumed.load_state_dict(saved)
    continued = _run(resumed, halfway, aggregates[3:])
    for a, b in zip(straight, continued, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_does_not_modify_its_arguments_or_a_saved_state(name: str) -> None:
    opt = OPTIMIZERS[name]()
    aggregates = _rounds(1, 3)
    current = _run(opt, _start(), aggregates[:1])
    before = opt.state_dict()
    copies = {k: np.array(v, copy=True) for k, v in before.items()}
    snapshot = [a.copy() for a in current], [a.copy() for a in aggregates[1]]
    out = opt.step(current=current, aggregate=aggregates[1])
    for a, b in zip((current, aggregates[1]), snapshot, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    for key, value in before.items():
        np.testing.assert_array_equal(value, copies[key])
    assert all(
        o is not c and o is not a for o, c, a in zip(out, current, aggregates[1], strict=True)
    )
    # Rolling back restores the state: the repeated step gives the same model.
    opt.load_state_dict(before)
    again = opt.step(current=current, aggregate=aggregates[1])
    for a, b in zip(out, again, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_empty_state_resets_and_counters_follow_the_aggregate(name: str) -> None:
    aggregates = _rounds(2, 3)
    opt = OPTIMIZERS[name]()
    assert opt.state_dict() == {}
    first = opt.step(current=_start(), aggregate=aggregates[0])
    _run(opt, first, aggregates[1:])
    opt.load_state_dict({})
    again = opt.step(current=_start(), aggregate=aggregates[0])
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[2], aggregates[0][2])
    assert [a.dtype for a in first] == [np.float32, np.float64, np.int64]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_mismatched_models_are_clear_errors(name: str) -> None:
    opt = OPTIMIZERS[name]()
    with pytest.raises(ValueError, match="aggregate has 1 arrays"):
        opt.step(current=_start(), aggregate=[np.zeros((3, 2), np.float32)])
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        opt.step(current=_start()[:1], aggregate=[np.zeros((2, 3), np.float32)])
    if name != "fedavg":  # stateless
        with pytest.raises(ValueError, match=r"unknown server optimizer state key 'q\.0'"):
            opt.load_state_dict({"q.0": np.zeros(2)})


def test_fedavgm_hand_computed() -> None:
    # Δ1 = 1 → m = 1, x = 0 + 0.5·1 = 0.5; Δ2 = 2 − 0.5 = 1.5 → m = 0.9 + 1.5 = 2.4,
    # x = 0.5 + 0.5·2.4 = 1.7.
    opt = FedAvgM(server_lr=0.5, momentum=0.9)
    x = opt.step(current=[np.zeros(1)], aggregate=[np.ones(1)])
    np.testing.assert_allclose(x[0], [0.5])
    x = opt.step(current=x, aggregate=[np.full(1, 2.0)])
    np.testing.assert_allclose(x[0], [1.7])
    np.testing.assert_allclose(opt.state_dict()["m.0"], [2.4])


TAU = 0.1


def test_fedadam_hand_computed() -> None:
    # Δ = 2; m = 0.1·2 = 0.2; v = 0.99·τ² + 0.01·4 = 0.0499; x = 0.5·0.2/(√0.0499 + τ).
    opt = FedAdam(0.5, beta1=0.9, beta2=0.99, tau=TAU)
    x = opt.step(current=[np.zeros(1)], aggregate=[np.full(1, 2.0)])
    np.testing.assert_allclose(x[0], [0.5 * 0.2 / (np.sqrt(0.0499) + TAU)], rtol=1e-12)
    np.testing.assert_allclose(opt.state_dict()["v.0"], [0.0499], rtol=1e-12)


def test_fedyogi_hand_computed() -> None:
    # Δ² = 4 > v = τ² = 0.01, so sign(v − Δ²) = −1: v = 0.01 + 0.01·4 = 0.05.
    # Second step from x: Δ = 0 → Δ² = 0 < v: v = 0.05 − 0 = 0.05, m = 0.9·0.2.
    opt = FedYogi(0.5, beta1=0.9, beta2=0.99, tau=TAU)
    x = opt.step(current=[np.zeros(1)], aggregate=[np.full(1, 2.0)])
    np.testing.assert_allclose(x[0], [0.5 * 0.2 / (np.sqrt(0.05) + TAU)], rtol=1e-12)
    np.testing.assert_allclose(opt.state_dict()["v.0"], [0.05], rtol=1e-12)
    y = opt.step(current=x, aggregate=x)
    np.testing.assert_allclose(y[0], x[0] + 0.5 * 0.18 / (np.sqrt(0.05) + TAU), rtol=1e-12)


def test_fedadagrad_hand_computed() -> None:
    # β1 = 0: m = Δ = 2; v = τ² + 4 = 4.01; x = 0.5·2/(√4.01 + τ).
    opt = FedAdagrad(0.5, tau=TAU)
    x = opt.step(current=[np.zeros(1)], aggregate=[np.full(1, 2.0)])
    np.testing.assert_allclose(x[0], [1.0 / (np.sqrt(4.01) + TAU)], rtol=1e-12)
    assert opt.state_dict()["steps"] == 1


def test_build_server_optimizer_for_every_strategy() -> None:
    built = {
        FedAvgStrategy(server_lr=0.5): FedAvgStep,
        FedProxStrategy(): FedAvgStep,
        FedNovaStrategy(server_lr=0.9): FedAvgStep,
        ScaffoldStrategy(server_lr=0.7): FedAvgStep,  # c is the scaffold transform's
        FedAvgMStrategy(momentum=0.5): FedAvgM,
        FedAdamStrategy(beta2=0.9): FedAdam,
        FedYogiStrategy(tau=0.5): FedYogi,
        FedAdagradStrategy(beta1=0.3): FedAdagrad,
    }
    for strategy, cls in built.items():
        opt = build_server_optimizer(strategy)
        assert type(opt) is cls
        assert opt.server_lr == strategy.server_lr  # type: ignore[attr-defined]
    adam = build_server_optimizer(FedAdamStrategy(beta2=0.9, tau=0.5))
    assert isinstance(adam, FedAdam) and (adam.beta2, adam.tau) == (0.9, 0.5)
    momentum = build_server_optimizer(FedAvgMStrategy(momentum=0.5))
    assert isinstance(momentum, FedAvgM) and momentum.momentum == 0.5


def test_constructor_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="server_lr=0"):
        FedAdam(0)
    with pytest.raises(ValueError, match="beta2=1"):
        FedYogi(0.1, beta2=1)
    with pytest.raises(ValueError, match="tau=0"):
        FedAdagrad(0.1, tau=0)
    with pytest.raises(ValueError, match="momentum=1"):
        FedAvgM(1.0, momentum=1)
