from __future__ import annotations

import pytest

from fedpilot.guard import AcceptAll, RelativeDropGuard, build_guard
from fedpilot.spec import GuardSpec


def test_accuracy_drop_beyond_ten_percent_rolls_back() -> None:
    guard = RelativeDropGuard("accuracy", "max", 0.10)
    assert guard.judge(candidate={"accuracy": 0.81}, stable={"accuracy": 0.90}).accept
    verdict = guard.judge(candidate={"accuracy": 0.80}, stable={"accuracy": 0.90})
    assert not verdict.accept
    assert verdict.reason is not None and "accuracy" in verdict.reason and "0.9" in verdict.reason


def test_min_mode_rolls_back_on_loss_rise() -> None:
    guard = RelativeDropGuard("loss", "min", 0.10)
    assert guard.judge(candidate={"loss": 1.09}, stable={"loss": 1.0}).accept
    assert not guard.judge(candidate={"loss": 1.2}, stable={"loss": 1.0}).accept
    assert guard.judge(candidate={"loss": 0.1}, stable={"loss": 1.0}).accept


def test_first_judgement_without_stable_metric_accepts() -> None:
    assert RelativeDropGuard("accuracy").judge(candidate={"accuracy": 0.1}, stable={}).accept


def test_a_metric_nobody_evaluates_is_named_before_round_1_and_never_kills_a_round() -> None:
    guard = RelativeDropGuard("f1")
    warning = guard.unusable_with({"accuracy": 0.4})
    assert warning is not None and "guard.metric" in warning and "'f1'" in warning
    assert RelativeDropGuard("accuracy").unusable_with({"accuracy": 0.4}) is None
    verdict = guard.judge(candidate={"accuracy": 0.5}, stable={"accuracy": 0.4})
    assert verdict.accept and verdict.reason is not None and "'f1'" in verdict.reason


def test_disabled_guard_accepts_everything() -> None:
    guard = build_guard(GuardSpec(enabled=False))
    assert isinstance(guard, AcceptAll)
    assert guard.judge(candidate={"accuracy": 0.0}, stable={"accuracy": 1.0}).accept


# -- the initial model is a reference too (issue 13) -----------------------------------


def test_a_run_that_slides_below_the_initial_model_in_small_steps_is_rolled_back() -> None:
    """Each step is under 10% of the last accepted model's, but the slide from the
    initial model is not: the model is not "stable" below where it started."""
    guard = RelativeDropGuard("accuracy", "max", 0.10)
    guard.set_initial({"accuracy": 0.90})
    assert guard.judge(candidate={"accuracy": 0.83}, stable={"accuracy": 0.90}).accept
    verdict = guard.judge(candidate={"accuracy": 0.77}, stable={"accuracy": 0.83})
    assert not verdict.accept
    assert verdict.reason is not None and "initial model" in verdict.reason


def test_a_loss_that_rose_above_the_initial_models_is_rolled_back() -> None:
    guard = RelativeDropGuard("loss", "min", 0.10)
    guard.set_initial({"loss": 2.30})
    assert not guard.judge(candidate={"loss": 2.60}, stable={"loss": 2.45}).accept
    assert guard.judge(candidate={"loss": 0.5}, stable={"loss": 0.48}).accept


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_metric_that_is_not_a_number_is_rolled_back(value: float) -> None:
    for mode in ("max", "min"):
        guard = RelativeDropGuard("accuracy", mode)  # type: ignore[arg-type]
        for stable in ({}, {"accuracy": 0.5}):
            verdict = guard.judge(candidate={"accuracy": value}, stable=stable)
            assert not verdict.accept and "not a number" in (verdict.reason or "")


def test_the_initial_metrics_travel_with_the_checkpoint() -> None:
    guard = RelativeDropGuard("accuracy")
    guard.set_initial({"accuracy": 0.42, "loss": 2.3})
    restored = RelativeDropGuard("accuracy")
    restored.load_state_dict(guard.state_dict())
    assert restored.initial == {"accuracy": 0.42, "loss": 2.3}
    fresh = RelativeDropGuard("accuracy")
    fresh.load_state_dict({})  # a checkpoint from before the guard kept state
    assert fresh.initial == {}
