"""Guard: accept the new global model, or roll back to the last stable one."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from fedpilot.types import Metrics

if TYPE_CHECKING:
    from fedpilot.spec.sections import GuardSpec


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str | None = None


class Guard(ABC):
    """Judges a candidate global model against the last accepted one, and knows the
    initial model's metrics (:attr:`initial`, kept in the checkpoint as ``guard``).

    A user's own guard subclasses this and is named in the spec as
    ``guard.name: package.module:Class``; it is built with ``guard.params``.
    """

    _initial: Metrics | None = None

    @property
    def initial(self) -> Metrics:
        """The initial model's metrics (round 0); empty until :meth:`set_initial`."""
        return self._initial or {}

    @classmethod
    def from_spec(cls, spec: GuardSpec) -> Self:
        """Build the guard from the ``guard`` section; by default with ``params``."""
        return cls(**spec.params)

    @abstractmethod
    def judge(self, *, candidate: Metrics, stable: Metrics) -> Verdict:
        """Compare the candidate model's metrics with the last accepted model's. A guard
        that cannot judge (its metric was not evaluated) accepts and says why in
        ``reason``: a running federation never dies for a missing metric."""

    def set_initial(self, metrics: Metrics) -> None:
        """Remember the initial model's metrics; called once, before round 1 of a run."""
        self._initial = dict(metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"initial": dict(self.initial)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._initial = {str(k): float(v) for k, v in dict(state.get("initial", {})).items()}

    def unusable_with(self, metrics: Metrics) -> str | None:
        """Why this guard cannot judge a run whose models are evaluated as ``metrics``
        (the initial model's), or None. Asked once before round 1."""
        del metrics
        return None
