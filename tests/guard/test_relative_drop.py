from __future__ import annotations

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
