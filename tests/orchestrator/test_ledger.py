from __future__ import annotations

import json

import pytest

from fedpilot.orchestrator.ledger import LearnerLedger
from fedpilot.selection._base import LearnerOutcome


def test_reliability_has_a_laplace_prior_and_follows_acceptances() -> None:
    ledger = LearnerLedger()
    assert ledger.reliability("a") == 0.5
    ledger.record(1, {"a": LearnerOutcome("a", "accepted"), "b": LearnerOutcome("b", "rejected")})
    ledger.record(2, {"a": LearnerOutcome("a", "accepted"), "b": LearnerOutcome("b", "failed")})
    assert ledger.reliability("a") == pytest.approx(3 / 4)
    assert ledger.reliability("b") == pytest.approx(1 / 4)


def test_lateness_is_the_share_of_the_deadline_used_and_no_answer_counts_fully() -> None:
    ledger = LearnerLedger()
    ledger.record(1, {"a": LearnerOutcome("a", "accepted", duration=5.0, deadline=10.0)})
    ledger.record(2, {"a": LearnerOutcome("a", "failed", deadline=10.0)})
    assert ledger.lateness("a") == pytest.approx((0.5 + 1.0) / 2)
    assert ledger.lateness("never-seen") == 0.0


def test_state_round_trips_through_json() -> None:
    ledger = LearnerLedger()
    ledger.record(3, {"a": LearnerOutcome("a", "accepted", loss=0.7, duration=1.0, deadline=4.0)})
    restored = LearnerLedger()
    restored.load_state_dict(json.loads(json.dumps(ledger.state_dict())))
    assert restored.state_dict() == ledger.state_dict()
    assert restored.get("a").last_loss == 0.7 and restored.get("a").last_round == 3
