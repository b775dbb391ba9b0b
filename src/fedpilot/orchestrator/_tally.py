"""What one round's replies added up to: the bookkeeping the round loop reads from."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedpilot.aggregation.weighting import WeightFactors
from fedpilot.ledger import LearnerOutcome
from fedpilot.orchestrator.events import UpdateVerdict
from fedpilot.types import LearnerId, Metrics, Reply, Update


@dataclass
class RoundTally:
    """Replies of one round, sorted into accepted, rejected and failed."""

    deadline_s: float | None
    accepted: list[LearnerId] = field(default_factory=list)
    rejected: dict[LearnerId, str] = field(default_factory=dict)
    failed: dict[LearnerId, str] = field(default_factory=dict)
    learner_metrics: dict[LearnerId, Metrics] = field(default_factory=dict)
    factors: dict[LearnerId, WeightFactors] = field(default_factory=dict)
    norms: dict[LearnerId, float] = field(default_factory=dict)
    pending: dict[LearnerId, Update] = field(default_factory=dict)
    """Accepted updates the transforms' ``on_accepted`` sees after the cohort checks."""
    outcomes: dict[LearnerId, LearnerOutcome] = field(default_factory=dict)
    held: list[tuple[LearnerId, UpdateVerdict]] = field(default_factory=list)
    """Verdicts of accepted updates waiting for the cohort checks."""
    bytes_sent: int = 0
    bytes_received: int = 0

    def count_bytes(self, reply: Reply) -> None:
        self.bytes_sent += reply.bytes_sent
        self.bytes_received += reply.bytes_received

    def fail(self, reply: Reply) -> None:
        reason = reply.error or "failed"
        self.failed[reply.learner] = reason
        # A learner that produced nothing used the whole deadline as far as anyone knows.
        self.outcomes[reply.learner] = LearnerOutcome(
            reply.learner, "failed", deadline=self.deadline_s
        )

    def reject(self, reply: Reply, reason: str) -> None:
        self.rejected[reply.learner] = reason
        self.outcomes[reply.learner] = LearnerOutcome(
            reply.learner,
            "rejected",
            loss=reply.metrics.get("loss"),
            duration=reply.duration,
            deadline=self.deadline_s,
        )

    def accept(
        self, reply: Reply, num_examples: int, factors: WeightFactors, norm: float | None
    ) -> None:
        learner = reply.learner
        self.accepted.append(learner)
        self.factors[learner] = factors
        if norm is not None:
            self.norms[learner] = norm
        self.learner_metrics[learner] = {
            **reply.metrics,
            "num_examples": float(num_examples),
            "duration_s": reply.duration,
            "aggregation_weight": factors.weight,
        }
        self.outcomes[learner] = LearnerOutcome(
            learner,
            "accepted",
            num_examples=num_examples,
            loss=reply.metrics.get("loss"),
            duration=reply.duration,
            deadline=self.deadline_s,
        )

    def withdraw(self, learner: LearnerId, reason: str) -> None:
        """An accepted update the cohort checks rejected after all."""
        self.accepted.remove(learner)
        self.rejected[learner] = reason
        for store in (self.learner_metrics, self.factors, self.norms, self.pending):
            store.pop(learner, None)
        old = self.outcomes[learner]
        self.outcomes[learner] = LearnerOutcome(
            learner, "rejected", loss=old.loss, duration=old.duration, deadline=old.deadline
        )

    def train_loss(self) -> float | None:
        total = weight = 0.0
        for learner in self.accepted:
            metrics = self.learner_metrics[learner]
            if "loss" in metrics:
                total += metrics["num_examples"] * metrics["loss"]
                weight += metrics["num_examples"]
        return total / weight if weight else None
