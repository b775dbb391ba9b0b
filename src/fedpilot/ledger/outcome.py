"""What became of one chosen learner's work in a round: the unit the ledger records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedpilot.types import LearnerId

OutcomeStatus = Literal["accepted", "rejected", "failed"]


@dataclass(frozen=True)
class LearnerOutcome:
    """What became of one chosen learner's work in a round.

    Attributes:
        learner: The learner.
        status: ``accepted`` (the update was folded in), ``rejected`` (it replied, the
            validator refused the update) or ``failed`` (error, timeout, unavailable).
        num_examples: Examples the learner trained on (accepted updates only).
        loss: The learner's reported training loss, if any.
        duration: Seconds the learner took (simulated seconds in simulation).
        deadline: Seconds the round allowed, if known; a failed learner that reports no
            duration is taken to have used all of it.
    """

    learner: LearnerId
    status: OutcomeStatus
    num_examples: int = 0
    loss: float | None = None
    duration: float | None = None
    deadline: float | None = None
