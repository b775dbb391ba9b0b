"""Rounds of several exchanges: extra request/reply phases with the round's cohort.

A round is select → [phases before training] → training → [phases after training] →
server stage → server step → evaluate → guard. Each phase sends a custom instruction
(``query.<action>``) to the learners still in the cohort and reads their replies; a
learner that fails or is refused in a phase drops out of the round, and every later phase
(and the training) sees the smaller cohort. Secure aggregation (setup → share keys →
masked upload → unmask) and drift summaries are built on this.

Phases come from the server halves of update transforms (``UpdateTransform.phases``), so
the learner half that answers them lives in the same class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from fedpilot.transforms import Exchange
from fedpilot.types import LearnerId, RoundContext


class Phase(ABC):
    """One request/reply exchange with the round's cohort.

    Attributes:
        kind: The instruction kind, ``query.<action>``; a learner-side transform
            declaring ``<action>`` answers it.
        after_training: Run after the training exchange (with the learners whose
            update was accepted) instead of before it.
    """

    kind: ClassVar[str]
    after_training: ClassVar[bool] = False

    @abstractmethod
    def requests(
        self, *, cohort: Sequence[LearnerId], ctx: RoundContext
    ) -> Mapping[LearnerId, Exchange]:
        """What to send each learner still in the round (a subset of ``cohort``)."""

    @abstractmethod
    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        """One learner's answer; return a reason to drop the learner, or None."""

    def dropped(self, learner: LearnerId, reason: str, *, ctx: RoundContext) -> None:
        """``learner`` left the round in this phase (failed, timed out or was refused)."""
