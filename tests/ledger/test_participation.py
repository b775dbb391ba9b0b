"""ParticipationLog: the per-learner track record selectors and adaptive weighting read."""

from __future__ import annotations

import json

import pytest

from fedpilot.errors import ResumeError
from fedpilot.ledger import LearnerOutcome, ParticipationLog


def test_reliability_has_a_laplace_prior_and_follows_acceptances() -> None:
    log = ParticipationLog()
    assert log.reliability("a") == 0.5
    log.update(1, {"a": LearnerOutcome("a", "accepted"), "b": LearnerOutcome("b", "rejected")})
    log.update(2, {"a": LearnerOutcome("a", "accepted"), "b": LearnerOutcome("b", "failed")})
    assert log.reliability("a") == pytest.approx(3 / 4)
    assert log.reliability("b") == pytest.approx(1 / 4)


def test_lateness_is_the_share_of_the_deadline_used_and_no_answer_counts_fully() -> None:
    log = ParticipationLog()
    log.update(1, {"a": LearnerOutcome("a", "accepted", duration=5.0, deadline=10.0)})
    log.update(2, {"a": LearnerOutcome("a", "failed", deadline=10.0)})
    assert log.lateness("a") == pytest.approx((0.5 + 1.0) / 2)
    assert log.lateness("never-seen") == 0.0
    record = log.get("a")
    assert record is not None and record.duration == 10.0 and record.streak == 1


def test_state_is_a_table_that_restores_every_record() -> None:
    log = ParticipationLog()
    log.update(3, {"b": LearnerOutcome("b", "failed"), "a": LearnerOutcome("a", "accepted", 7)})
    log.update(4, {"a": LearnerOutcome("a", "accepted", 5, loss=0.7, duration=1.0, deadline=4.0)})
    state = log.state_dict()
    assert state["learners"] == ["a", "b"] and state["table"].shape == (2, len(state["columns"]))
    tried = state["columns"].index("tried")
    assert state["table"][:, tried].tolist() == [2.0, 1.0]
    for stored in (state, json.loads(json.dumps({**state, "table": state["table"].tolist()}))):
        restored = ParticipationLog()
        restored.load_state_dict(stored)
        assert restored.records == log.records
    record = restored.get("b")
    assert record is not None and record.loss is None and record.failed == 1
    assert isinstance(record.tried, int)


def test_a_malformed_state_is_a_resume_error() -> None:
    with pytest.raises(ResumeError, match="learner history"):
        ParticipationLog().load_state_dict({"learners": ["a", "b"], "table": [[1.0]]})
