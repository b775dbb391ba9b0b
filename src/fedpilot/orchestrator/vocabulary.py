"""The names of what happens in a run: one :class:`EventType` per kind of event.

Every writer and reader of events (the event log, MLflow, the status file, the live view,
``fedpilot runs``, the server's follower; Prometheus, the audit log and the control plane
next) names events through this enumeration, so an event is named once. The values are
the ``event`` field of ``events.jsonl`` and never change: logs written by older versions
stay readable. Light on purpose: importing it loads neither torch nor Flower.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from fedpilot.orchestrator.events import RoundStatus


class EventType(StrEnum):
    """A kind of event; the value is what ``events.jsonl`` writes as ``event``."""

    RUN_STARTED = "RunStarted"
    """A process began (or resumed) the run: ``Callback.on_run_start``."""
    ROUND_STARTED = "RoundStarted"
    """Learners were chosen for a round: ``on_round_start``."""
    UPDATE_ACCEPTED = "UpdateAccepted"
    """A learner's update passed validation and was folded in: ``on_update``."""
    UPDATE_REJECTED = "UpdateRejected"
    """A learner's update was refused by validation: ``on_update``."""
    UPDATE_FAILED = "UpdateFailed"
    """A learner failed (raised, timed out) instead of replying: ``on_update``."""
    MODEL_ROLLED_BACK = "ModelRolledBack"
    """The guard refused the round's model: ``on_model_rolled_back``."""
    LEARNER_JOINED = "LearnerJoined"
    """A learner became reachable: ``on_fleet_notice`` (``joined``)."""
    LEARNER_LEFT = "LearnerLeft"
    """A learner stopped being reachable: ``on_fleet_notice`` (``left``)."""
    LEARNER_REFUSED = "LearnerRefused"
    """A learner was turned away (its key is not allowed): ``on_fleet_notice`` (``refused``)."""
    ROUND_COMPLETED = "RoundCompleted"
    """A round ended with a model, new or rolled back (``status``): ``on_round_end``."""
    ROUND_FAILED = "RoundFailed"
    """A round ended without a model: ``on_round_end`` with status ``failed``."""
    PRIVACY_SPENT = "PrivacySpent"
    """A differentially private round ended; ε(δ) so far: ``on_privacy_spent``."""
    SECURE_AGGREGATION_FAILED = "SecureAggregationFailed"
    """Secure aggregation could not unmask the round's sum (fewer shares than its
    threshold) and revealed nothing: ``on_secure_aggregation_failed``; the round fails."""
    DRIFT_DETECTED = "DriftDetected"
    """A learner's data or the model drifted past a threshold: ``on_drift``."""
    WARNING = "Warning"
    """Something the run worked around and a person should know: ``on_warning``."""
    ALERT_FIRING = "AlertFiring"
    """An alert rule began firing: ``on_alert`` (``state: firing``)."""
    ALERT_RESOLVED = "AlertResolved"
    """A firing alert rule stopped firing: ``on_alert`` (``state: resolved``)."""
    RUN_FINISHED = "RunFinished"
    """The run ended (completed, stopped, interrupted or failed): ``on_run_end``."""
    MODEL_REGISTERED = "ModelRegistered"
    """The completed run's model became a version of its registered model (alias
    ``challenger``); written after ``RunFinished`` by ``fedpilot.model_registry``."""
    GATE_DECIDED = "GateDecided"
    """``fedpilot models promote`` checked this run's model version against the gate rules
    (``passed``, and each failed rule with both values)."""
    MODEL_PROMOTED = "ModelPromoted"
    """This run's model version became the ``champion``."""
    CHAMPION_ROLLED_BACK = "ChampionRolledBack"
    """``fedpilot models rollback`` took ``champion`` from this run's model version back to
    the previous champion."""

    @classmethod
    def of_update(cls, *, accepted: bool, failed: bool) -> EventType:
        """The event of a learner's reply, from its verdict."""
        if accepted:
            return cls.UPDATE_ACCEPTED
        return cls.UPDATE_FAILED if failed else cls.UPDATE_REJECTED

    @classmethod
    def of_round(cls, status: RoundStatus) -> EventType:
        """The event that ends a round of this status (a rolled-back round completed)."""
        return cls.ROUND_FAILED if status == "failed" else cls.ROUND_COMPLETED

    @classmethod
    def of_notice(cls, kind: Literal["joined", "left", "refused"]) -> EventType:
        """The event of a fleet notice of this kind."""
        return _NOTICES[kind]


_NOTICES = {
    "joined": EventType.LEARNER_JOINED,
    "left": EventType.LEARNER_LEFT,
    "refused": EventType.LEARNER_REFUSED,
}

ROUND_ENDS = frozenset({EventType.ROUND_COMPLETED, EventType.ROUND_FAILED})
"""The events that close a round (one per round; a re-run round writes it again)."""

MODEL_REGISTRY_EVENTS = frozenset(
    {
        EventType.MODEL_REGISTERED,
        EventType.GATE_DECIDED,
        EventType.MODEL_PROMOTED,
        EventType.CHAMPION_ROLLED_BACK,
    }
)
"""What the model registry appends to a run's log: after the run's end, never by a hook."""

__all__ = ["MODEL_REGISTRY_EVENTS", "ROUND_ENDS", "EventType"]
