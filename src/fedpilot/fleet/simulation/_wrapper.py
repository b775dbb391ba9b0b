"""The base of the simulation wrappers: a Fleet that forwards to another Fleet."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fedpilot.fleet._base import Fleet
from fedpilot.learner.protocol import SERVER_ROUND
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply

LOCAL_EPOCHS = "local-epochs"
DEFAULT_EPOCHS = 1.0
"""``local-epochs`` when an instruction does not say (TrainSettings' default)."""


class FleetWrapper(Fleet):
    """Forwards everything to ``inner``; subclasses change what ``dispatch`` does.

    ``state_dict`` nests the inner fleet's state under ``"inner"``, so checkpointing
    the outermost wrapper checkpoints the whole stack.

    Args:
        inner: The fleet whose learners this wrapper simulates around.
    """

    def __init__(self, inner: Fleet) -> None:
        self.inner = inner
        self._dispatches = 0

    def learners(self) -> Sequence[LearnerInfo]:
        """The inner fleet's learners."""
        return self.inner.learners()

    @property
    def replies_in_order(self) -> bool:
        return self.inner.replies_in_order

    @property
    def virtual_time(self) -> float | None:
        return self.inner.virtual_time

    def lateness_deadline(self, round_timeout: float) -> float | None:
        return self.inner.lateness_deadline(round_timeout)

    def close(self) -> None:
        self.inner.close()

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to behave as an uninterrupted one: this wrapper's
        JSON-able state, and the inner fleet's under ``"inner"``."""
        own = {**self._own_state(), "dispatches": self._dispatches}
        return {**own, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._dispatches = int(state.get("dispatches", 0))
        self._load_own_state(state)
        self.inner.load_state_dict(dict(state.get("inner", {})))

    def _own_state(self) -> dict[str, Any]:
        return {}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        """Subclasses with state restore it here."""

    def _round_of(self, instructions: Mapping[LearnerId, Instruction]) -> int:
        """The round the instructions belong to: their ``server-round``, else the count of
        dispatches so far (kept in ``state_dict``, so a resumed run counts on)."""
        self._dispatches += 1
        for instruction in instructions.values():
            value = instruction.config.get(SERVER_ROUND)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return self._dispatches


def failed(learner: LearnerId, instruction: Instruction, reason: str) -> Reply:
    """A reply for a learner the simulation failed without running it."""
    return Reply(learner=learner, kind=instruction.kind, error=reason)


def round_half_up(x: float) -> int:
    """``x`` rounded to the nearest integer, halves up.

    Python's ``round`` sends 2.5 to 2 but 3.5 to 4; a share of learners should not
    depend on the parity of the count."""
    return math.floor(x + 0.5)


def epochs_of(instruction: Instruction) -> float:
    """The local epochs an instruction asks for."""
    value = instruction.config.get(LOCAL_EPOCHS, DEFAULT_EPOCHS)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return DEFAULT_EPOCHS
    return float(value)
