"""One state protocol: every part of a run that keeps state registers under a name, and
the checkpoint saves and restores them all.

A new stateful part (a privacy accountant, a codec's error-feedback residuals, a drift
reference) registers itself when the run is assembled; neither the round loop nor the
checkpoint needs to know it exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from fedpilot.types import LearnerId, LearnerState


@runtime_checkable
class Stateful(Protocol):
    """What the checkpoint keeps of a part. ``state_dict`` returns a snapshot (JSON-able
    data whose leaves may be numpy arrays) that later changes of the part do not alter;
    ``load_state_dict`` restores one (an empty dict: the part's initial state)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StateRegistry:
    """The run's stateful parts by name, in registration order.

    Parts registered with ``rollback=True`` describe the global model's lineage (the server
    optimizer's moments, a server transform's control variate): when the guard rolls a
    round back, they return to what they were before the round's server stage.
    """

    def __init__(self) -> None:
        self._parts: dict[str, Stateful] = {}
        self._rollback: list[str] = []

    def register(self, name: str, part: Stateful, *, rollback: bool = False) -> None:
        if name in self._parts:
            raise ValueError(f"a stateful part named {name!r} is already registered")
        self._parts[name] = part
        if rollback:
            self._rollback.append(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __getitem__(self, name: str) -> Stateful:
        return self._parts[name]

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self._parts.items()}

    def load_state_dict(self, states: dict[str, Any]) -> None:
        """Restore every registered part; one the checkpoint lacks starts fresh."""
        for name, part in self._parts.items():
            part.load_state_dict(states.get(name, {}))

    def snapshot(self) -> dict[str, Any]:
        """The rollback parts' state, for :meth:`roll_back`."""
        return {name: self._parts[name].state_dict() for name in self._rollback}

    def roll_back(self, snapshot: dict[str, Any]) -> None:
        for name, state in snapshot.items():
            self._parts[name].load_state_dict(state)


class LearnerStates:
    """Each learner's own state (its transforms' per-learner state), held by the server:
    sent with every instruction, replaced by what the reply brings back, checkpointed."""

    def __init__(self) -> None:
        self._states: dict[LearnerId, LearnerState] = {}

    def get(self, learner: LearnerId) -> LearnerState:
        # A fresh dict for a learner with none: an in-process learner may fill it in place.
        return self._states.get(learner) or {}

    def keep(self, learner: LearnerId, state: LearnerState | None) -> None:
        if state is not None:
            self._states[learner] = state

    def state_dict(self) -> dict[str, Any]:
        return {learner: dict(state) for learner, state in self._states.items() if state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._states = {
            learner: {name: list(arrays) for name, arrays in own.items()}
            for learner, own in state.items()
        }
