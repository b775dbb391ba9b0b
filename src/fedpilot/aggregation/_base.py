"""Aggregator (a streaming fold of accepted updates) and ServerOptimizer (the server step)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from fedpilot.types import RoundContext, Update, Weights


class Aggregator(ABC):
    """Folds a round's accepted updates one at a time, as they arrive.

    The orchestrator calls ``begin`` once per round, ``add`` once per accepted update
    (in arrival order), then ``result``. Implementations hold O(model) state, never a
    list of updates, so memory does not grow with the cohort.
    """

    @abstractmethod
    def begin(self, *, reference: Weights, ctx: RoundContext) -> None:
        """Reset for a new round; ``reference`` is the current global model."""

    @abstractmethod
    def add(self, update: Update) -> None:
        """Fold one accepted update in."""

    @abstractmethod
    def result(self) -> Weights:
        """The aggregate of everything added since ``begin``."""

    @property
    @abstractmethod
    def count(self) -> int:
        """How many updates were added this round."""


class ServerOptimizer(ABC):
    """Turns the round's aggregate into the next global model."""

    @abstractmethod
    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        """The candidate global model; must not modify its arguments."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive a checkpoint (numpy arrays allowed as values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        del state
