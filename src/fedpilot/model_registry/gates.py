"""Promotion gates: may a challenger model version become the champion? Pure: no I/O.

The rules come from the challenger's run spec (``registry:``) and travel with the version
as tags, so ``fedpilot models promote`` judges it long after the run, by the rules its run
was given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fedpilot.spec import FederationSpec

GateRule = Literal["tolerance", "floor", "worst_learner_floor"]

_RULE_TAG = "fedpilot.gate."


@dataclass(frozen=True)
class GateRules:
    """What a challenger must reach: see :class:`~fedpilot.spec.registry.RegistrySpec`."""

    metric: str
    mode: Literal["max", "min"] = "max"
    tolerance: float = 0.0
    floor: float | None = None
    worst_learner_floor: float | None = None

    @classmethod
    def from_spec(cls, spec: FederationSpec) -> GateRules:
        """The rules of a run's ``registry`` section (metric and mode default to the guard's)."""
        registry = spec.registry
        return cls(
            metric=registry.metric or spec.guard.metric,
            mode=registry.mode or spec.guard.mode,
            tolerance=registry.tolerance,
            floor=registry.floor,
            worst_learner_floor=registry.worst_learner_floor,
        )

    def tags(self) -> dict[str, str]:
        """The rules as model version tags (``fedpilot.gate.<field>``)."""
        tags = {
            f"{_RULE_TAG}metric": self.metric,
            f"{_RULE_TAG}mode": self.mode,
            f"{_RULE_TAG}tolerance": repr(self.tolerance),
        }
        if self.floor is not None:
            tags[f"{_RULE_TAG}floor"] = repr(self.floor)
        if self.worst_learner_floor is not None:
            tags[f"{_RULE_TAG}worst_learner_floor"] = repr(self.worst_learner_floor)
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> GateRules | None:
        """The rules a version's tags hold, or None when it has none (not registered by
        fedpilot) or they are unreadable."""
        metric = tags.get(f"{_RULE_TAG}metric")
        mode = tags.get(f"{_RULE_TAG}mode", "max")
        if not metric or mode not in ("max", "min"):
            return None
        try:
            tolerance = float(tags.get(f"{_RULE_TAG}tolerance", "0"))
            floor = _number(tags.get(f"{_RULE_TAG}floor"))
            worst = _number(tags.get(f"{_RULE_TAG}worst_learner_floor"))
        except ValueError:
            return None
        return cls(metric, "max" if mode == "max" else "min", tolerance, floor, worst)


@dataclass(frozen=True)
class Measured:
    """What a model version's lineage says of it: the central metric and the worst
    learner's (None where not measured)."""

    central: float | None
    worst_learner: float | None = None


@dataclass(frozen=True)
class GateFailure:
    """One rule that failed: what it needs, what the challenger has."""

    rule: GateRule
    value: float | None
    """The challenger's value (None: it was never measured)."""
    threshold: float
    """What the rule asks the value to reach."""
    message: str


@dataclass(frozen=True)
class GateDecision:
    """Every rule's outcome: promotion passes only with no failure."""

    failures: tuple[GateFailure, ...]
    checked: tuple[GateRule, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line: ``passed (rules)`` or each failure's message."""
        if self.passed:
            return f"passed ({', '.join(self.checked) or 'no rule set'})"
        return "failed: " + "; ".join(f.message for f in self.failures)


def judge(rules: GateRules, challenger: Measured, champion: Measured | None) -> GateDecision:
    """Checks ``challenger`` against the rules: the champion's metric less the tolerance
    (only when there is a champion), the floor, the worst learner's floor."""
    better = _at_least if rules.mode == "max" else _at_most
    sign = -1.0 if rules.mode == "max" else 1.0
    relation = ">=" if rules.mode == "max" else "<="
    checks: list[tuple[GateRule, float | None, float, str]] = []
    if champion is not None and champion.central is not None:
        bound = champion.central + sign * rules.tolerance
        checks.append(
            (
                "tolerance",
                challenger.central,
                bound,
                f"the champion's {rules.metric} {champion.central:.6g} "
                f"{'-' if sign < 0 else '+'} tolerance {rules.tolerance:g}",
            )
        )
    if rules.floor is not None:
        checks.append(("floor", challenger.central, rules.floor, f"floor {rules.floor:g}"))
    if rules.worst_learner_floor is not None:
        checks.append(
            (
                "worst_learner_floor",
                challenger.worst_learner,
                rules.worst_learner_floor,
                f"worst_learner_floor {rules.worst_learner_floor:g}",
            )
        )
    failures = []
    for rule, value, threshold, what in checks:
        if value is not None and better(value, threshold):
            continue
        name = "worst learner's " + rules.metric if rule == "worst_learner_floor" else rules.metric
        shown = "not measured" if value is None else f"{value:.6g}"
        message = (
            f"{rule}: {name} {shown} must be {relation} {threshold:.6g} ({what})"
            if value is not None
            else f"{rule}: {name} was not measured; the rule needs it {relation} {threshold:.6g}"
        )
        failures.append(GateFailure(rule, value, threshold, message))
    return GateDecision(tuple(failures), tuple(rule for rule, *_ in checks))


def _at_least(value: float, bound: float) -> bool:
    return math.isfinite(value) and value >= bound


def _at_most(value: float, bound: float) -> bool:
    return math.isfinite(value) and value <= bound


def _number(text: str | None) -> float | None:
    return None if text is None or text == "" else float(text)


__all__ = ["GateDecision", "GateFailure", "GateRule", "GateRules", "Measured", "judge"]
