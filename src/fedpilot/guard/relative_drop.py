"""The >10% rule: roll back a global model whose guarded metric got worse by too much."""

from __future__ import annotations

import math
from typing import Literal, Self

from fedpilot.guard._base import Guard, Verdict
from fedpilot.spec.sections import GuardSpec
from fedpilot.types import Metrics


class RelativeDropGuard(Guard):
    """Rolls back when ``metric`` worsens by more than ``max_relative_drop`` of the stable
    value, or of the initial model's: a model that slid down in steps each under the limit
    is not "stable" once it is worse than the one the run started from by more than the
    limit. A metric that is not a number (NaN, inf) always rolls back.

    ``mode="max"``: higher is better (accuracy); ``mode="min"``: lower is better (loss).
    """

    def __init__(
        self, metric: str, mode: Literal["max", "min"] = "max", max_relative_drop: float = 0.10
    ) -> None:
        self.metric = metric
        self.mode = mode
        self.max_relative_drop = max_relative_drop

    def unusable_with(self, metrics: Metrics) -> str | None:
        if self.metric in metrics:
            return None
        return (
            f"`guard.metric` {self.metric!r} is not among the evaluated metrics "
            f"{sorted(metrics)}: the guard is off for this run (set guard.metric to one of "
            "them, or guard.enabled=false)"
        )

    @classmethod
    def from_spec(cls, spec: GuardSpec) -> Self:
        return cls(spec.metric, spec.mode, spec.max_relative_drop)

    def judge(self, *, candidate: Metrics, stable: Metrics) -> Verdict:
        if self.metric not in candidate:
            return Verdict(
                True,
                f"`guard.metric` {self.metric!r} was not evaluated this round (evaluated: "
                f"{sorted(candidate)}); the model was accepted unjudged",
            )
        new = candidate[self.metric]
        if not math.isfinite(new):
            return Verdict(False, f"{self.metric} of the new model is {new}, not a number")
        references = [("last accepted", stable), ("initial", self.initial)]
        for which, reference in references:
            if self.metric not in reference:  # nothing to compare with
                continue
            old = reference[self.metric]
            worsening = (old - new) if self.mode == "max" else (new - old)
            allowed = self.max_relative_drop * abs(old)
            if worsening > allowed:
                change = worsening / abs(old) if old else float("inf")
                return Verdict(
                    False,
                    f"{self.metric} went from {old:.4g} ({which} model) to {new:.4g} "
                    f"({change:.1%} worse), more than max_relative_drop="
                    f"{self.max_relative_drop:.0%}",
                )
        return Verdict(True)


class AcceptAll(Guard):
    """The guard when ``guard.enabled`` is false."""

    def judge(self, *, candidate: Metrics, stable: Metrics) -> Verdict:
        return Verdict(True)
