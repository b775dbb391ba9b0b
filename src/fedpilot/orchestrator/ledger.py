"""Per-learner track record across rounds: what adaptive weighting and reports read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedpilot.selection._base import LearnerOutcome
from fedpilot.types import LearnerId


@dataclass
class LearnerRecord:
    """One learner's history. Counts cover rounds it was chosen for."""

    chosen: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    lateness_sum: float = 0.0
    """Sum over timed replies of min(1, duration / deadline)."""
    timed: int = 0
    last_loss: float | None = None
    last_round: int = 0


class LearnerLedger:
    """Every learner's record, updated from each round's outcomes; checkpointed."""

    def __init__(self) -> None:
        self._records: dict[LearnerId, LearnerRecord] = {}

    def get(self, learner: LearnerId) -> LearnerRecord:
        return self._records.get(learner, LearnerRecord())

    def record(self, round_: int, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        for learner, outcome in outcomes.items():
            rec = self._records.setdefault(learner, LearnerRecord())
            rec.chosen += 1
            rec.last_round = round_
            if outcome.status == "accepted":
                rec.accepted += 1
            elif outcome.status == "rejected":
                rec.rejected += 1
            else:
                rec.failed += 1
            if outcome.loss is not None:
                rec.last_loss = outcome.loss
            if outcome.status == "failed" and outcome.duration is None:
                # A learner that never answered used the whole deadline.
                rec.lateness_sum += 1.0
                rec.timed += 1
            elif outcome.duration is not None and outcome.deadline:
                rec.lateness_sum += min(1.0, outcome.duration / outcome.deadline)
                rec.timed += 1

    def reliability(self, learner: LearnerId) -> float:
        """Share of the learner's past updates that were accepted, with a Laplace prior
        (a newcomer scores 1/2, never 0 or 1)."""
        rec = self.get(learner)
        return (rec.accepted + 1) / (rec.chosen + 2)

    def lateness(self, learner: LearnerId) -> float:
        """Mean share of the round deadline the learner used (0 when unknown)."""
        rec = self.get(learner)
        return rec.lateness_sum / rec.timed if rec.timed else 0.0

    def state_dict(self) -> dict[str, Any]:
        # vars() rather than asdict(): this runs every round, and asdict deep-copies.
        return {learner: dict(vars(rec)) for learner, rec in sorted(self._records.items())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._records = {learner: LearnerRecord(**rec) for learner, rec in state.items()}
