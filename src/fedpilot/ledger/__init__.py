"""The participation ledger: every learner's track record across rounds (who was chosen,
accepted, rejected, failed, how long it took). Selectors and adaptive weighting read it;
the checkpoint keeps it."""

from fedpilot.ledger.outcome import LearnerOutcome, OutcomeStatus
from fedpilot.ledger.participation import LearnerRecord, ParticipationLog, finite_or_none

__all__ = ["LearnerOutcome", "LearnerRecord", "OutcomeStatus", "ParticipationLog", "finite_or_none"]
