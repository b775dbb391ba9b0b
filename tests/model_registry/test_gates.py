"""The promotion gates: a pure function of the rules and the two versions' metrics."""

from __future__ import annotations

import math

from fedpilot.model_registry import GateRules, Measured, judge


def test_no_champion_checks_the_floors_only() -> None:
    rules = GateRules("accuracy", tolerance=0.01, floor=0.8, worst_learner_floor=0.5)
    decision = judge(rules, Measured(0.85, 0.6), None)
    assert decision.passed and decision.checked == ("floor", "worst_learner_floor")


def test_each_failed_rule_names_both_values() -> None:
    rules = GateRules("accuracy", tolerance=0.02, floor=0.9, worst_learner_floor=0.7)
    decision = judge(rules, Measured(0.85, 0.6), Measured(0.9))
    assert not decision.passed
    values = {f.rule: (f.value, f.threshold) for f in decision.failures}
    assert values == {
        "tolerance": (0.85, 0.9 - 0.02),
        "floor": (0.85, 0.9),
        "worst_learner_floor": (0.6, 0.7),
    }
    assert "tolerance: accuracy 0.85 must be >= 0.88" in decision.summary()


def test_a_champion_within_the_tolerance_passes() -> None:
    rules = GateRules("accuracy", tolerance=0.05)
    assert judge(rules, Measured(0.86), Measured(0.9)).passed
    assert not judge(rules, Measured(0.84), Measured(0.9)).passed


def test_mode_min_turns_every_bound_into_a_ceiling() -> None:
    rules = GateRules("loss", mode="min", tolerance=0.1, floor=0.5, worst_learner_floor=0.8)
    assert judge(rules, Measured(0.45, 0.7), Measured(0.4)).passed
    failed = judge(rules, Measured(0.55, 0.9), Measured(0.4))
    assert {f.rule for f in failed.failures} == {"tolerance", "floor", "worst_learner_floor"}
    assert "loss 0.55 must be <= 0.5" in failed.summary()


def test_an_unmeasured_or_non_finite_value_fails_its_rule() -> None:
    rules = GateRules("accuracy", floor=0.5, worst_learner_floor=0.5)
    decision = judge(rules, Measured(math.nan, None), None)
    assert {f.rule for f in decision.failures} == {"floor", "worst_learner_floor"}
    assert "worst learner's accuracy was not measured" in decision.summary()


def test_rules_round_trip_through_version_tags() -> None:
    rules = GateRules("loss", mode="min", tolerance=0.25, floor=1.5, worst_learner_floor=None)
    assert GateRules.from_tags(rules.tags()) == rules
    assert GateRules.from_tags({}) is None
    assert GateRules.from_tags({**rules.tags(), "fedpilot.gate.floor": "high"}) is None
