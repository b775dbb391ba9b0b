"""Guard: accept the new global model, or roll back to the last stable one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from fedpilot.types import Metrics


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str | None = None


class Guard(ABC):
    @abstractmethod
    def judge(self, *, candidate: Metrics, stable: Metrics) -> Verdict:
        """Compare the candidate model's metrics with the last accepted model's. A guard
        that cannot judge (its metric was not evaluated) accepts and says why in
        ``reason``: a running federation never dies for a missing metric."""

    def unusable_with(self, metrics: Metrics) -> str | None:
        """Why this guard cannot judge a run whose models are evaluated as ``metrics``
        (the initial model's), or None. Asked once before round 1."""
        del metrics
        return None
