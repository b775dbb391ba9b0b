"""A guard for the model registry's tests: it keeps round 1's model and rolls back every
later round, so a run's final model is round 1's while its last rounds are rolled back."""

from __future__ import annotations

from fedpilot.guard._base import Guard, Verdict
from fedpilot.types import Metrics


class KeepFirstRound(Guard):
    def __init__(self) -> None:
        self._judged = 0

    def judge(self, *, candidate: Metrics, stable: Metrics) -> Verdict:
        self._judged += 1
        if self._judged == 1:
            return Verdict(accept=True)
        return Verdict(accept=False, reason="this test keeps round 1's model")
