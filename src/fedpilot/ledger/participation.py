"""Per-learner track record across rounds: what selectors and adaptive weighting read.

Every selector keeps one (its own view of who did what); the orchestrator keeps one more
as its ledger, which adaptive aggregation weighting reads (reliability, lateness). Both
are checkpointed every round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from fedpilot.errors import ResumeError
from fedpilot.ledger.outcome import LearnerOutcome
from fedpilot.types import LearnerId


@dataclass
class LearnerRecord:
    """What is known about one learner from the rounds it was chosen for."""

    tried: int = 0
    """Rounds with an outcome (accepted, rejected or failed)."""
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    streak: int = 0
    """Consecutive rounds without an accepted update, up to now."""
    last_round: int = 0
    """The last round it was chosen in (0: never)."""
    loss: float | None = None
    """The training loss of its last accepted update."""
    examples: int = 0
    """Examples of its last accepted update."""
    duration: float | None = None
    """Seconds it took the last time a duration was reported (for a failure without one:
    the round's deadline)."""
    lateness_sum: float = 0.0
    """Sum over timed outcomes of min(1, duration / deadline); a failure without a
    duration counts 1 (it used the whole deadline)."""
    timed: int = 0
    """Outcomes counted in ``lateness_sum``."""


_FIELDS = tuple(f.name for f in fields(LearnerRecord))


class ParticipationLog:
    """Every learner's :class:`LearnerRecord`, updated from each round's outcomes."""

    def __init__(self) -> None:
        self.records: dict[LearnerId, LearnerRecord] = {}

    def get(self, learner: LearnerId) -> LearnerRecord | None:
        return self.records.get(learner)

    def tried(self, learner: LearnerId) -> bool:
        record = self.records.get(learner)
        return record is not None and record.tried > 0

    def update(self, round_: int, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        """Record round ``round_``'s outcomes."""
        # Sorted so the checkpoint's learner order does not depend on reply arrival order.
        for learner in sorted(outcomes):
            outcome = outcomes[learner]
            record = self.records.get(learner)
            if record is None:
                record = self.records[learner] = LearnerRecord()
            record.tried += 1
            record.last_round = max(record.last_round, round_)
            duration = finite_or_none(outcome.duration)
            deadline = finite_or_none(outcome.deadline)
            if duration is None and outcome.status == "failed":
                # A learner that delivered nothing used the whole deadline as far as anyone
                # knows: stragglers and dropouts then look slow to duration-aware selectors.
                record.lateness_sum += 1.0
                record.timed += 1
                duration = deadline
            elif duration is not None and deadline:
                record.lateness_sum += min(1.0, duration / deadline)
                record.timed += 1
            if duration is not None and duration >= 0:
                record.duration = duration
            if outcome.status == "accepted":
                record.accepted += 1
                record.streak = 0
                record.examples = max(0, int(outcome.num_examples))
                loss = finite_or_none(outcome.loss)
                if loss is not None:
                    record.loss = loss
            else:
                # A rejected update's loss is not trusted: it comes with the update that
                # failed validation.
                record.streak += 1
                if outcome.status == "rejected":
                    record.rejected += 1
                else:
                    record.failed += 1

    def reliability(self, learner: LearnerId) -> float:
        """Share of the learner's past updates that were accepted, with a Laplace prior
        (a newcomer scores 1/2, never 0 or 1)."""
        record = self.records.get(learner)
        return 0.5 if record is None else (record.accepted + 1) / (record.tried + 2)

    def lateness(self, learner: LearnerId) -> float:
        """Mean share of the round deadline the learner used (0 when unknown)."""
        record = self.records.get(learner)
        return record.lateness_sum / record.timed if record is not None and record.timed else 0.0

    def state_dict(self) -> dict[str, Any]:
        """The learners' ids and their records as one float64 table, a row per learner
        (missing values NaN). The checkpoint stores the table as binary: written every
        round, a thousand floats as JSON text cost more than the round's aggregation."""
        # vars() lists a dataclass's fields in definition order, the order of _FIELDS.
        rows = [tuple(vars(record).values()) for record in self.records.values()]
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(_FIELDS))
        return {"learners": list(self.records), "columns": list(_FIELDS), "table": table}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (the table may also be nested lists)."""
        learners = [str(learner) for learner in state.get("learners", [])]
        columns = [str(name) for name in state.get("columns", _FIELDS)]
        try:
            table = np.asarray(state.get("table", []), dtype=np.float64)
            rows = table.reshape(len(learners), len(columns)).tolist()
        except ValueError as exc:
            raise ResumeError(f"checkpoint has a malformed learner history: {exc}") from exc
        self.records = {
            learner: LearnerRecord(
                **{
                    name: _FROM_FLOAT[name](value)
                    for name, value in zip(columns, row, strict=True)
                    if name in _FROM_FLOAT
                }
            )
            for learner, row in zip(learners, rows, strict=True)
        }


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else value


_FROM_FLOAT: dict[str, Callable[[float], Any]] = {
    name: _optional if name in ("loss", "duration") else float if name == "lateness_sum" else int
    for name in _FIELDS
}


def finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
