"""What the round loop tells the outside world: typed hook arguments and the Callback protocol.

The loop never calls MLflow, Prometheus or the terminal directly; every operational
concern is a Callback observing these hooks (all optional, keyword-only).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fedpilot.types import FleetNotice, LearnerId, Metrics, RoundContext, Weights

if TYPE_CHECKING:
    from fedpilot.aggregation.weighting import WeightFactors
    from fedpilot.spec import FederationSpec
    from fedpilot.tasks._base import Task

RoundStatus = Literal["completed", "rolled_back", "failed"]
RunStatus = Literal["completed", "stopped", "interrupted", "failed"]
"""``stopped``: asked to stop (``Federation.stop``, a callback, SIGTERM) after a whole
round; ``interrupted``: Ctrl-C. Both leave a checkpoint the run resumes from."""


@dataclass(frozen=True)
class RunInfo:
    """A run as callbacks see it at start and end."""

    run_id: str
    run_dir: Path
    spec: FederationSpec
    start_round: int = 1
    """First round this process will run (> 1 after a resume)."""
    task: Task | None = None
    """Server-side Task (None for a plain Flower ClientApp): builds the model to log."""
    mode: Literal["federated", "centralized"] = "federated"
    history: tuple[RoundRecord, ...] = ()
    """The rounds run before this process (those of the checkpoint it resumed): what an
    observer's records must have once the run is resumed (a signal may have come between
    a round's checkpoint and its records)."""


@dataclass(frozen=True)
class UpdateVerdict:
    """What became of one learner's reply."""

    accepted: bool
    reason: str | None = None
    """Why it was rejected or failed; None when accepted."""
    failed: bool = False
    """True if the learner itself failed (raised, timed out) rather than sent a bad update."""
    num_examples: int = 0
    metrics: Metrics = field(default_factory=dict)
    duration: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    digest: str | None = None
    """SHA-256 (hex) of the update's arrays as received, before any decoding (each
    array's dtype, shape and bytes: the weights, then the extras by name); None when the
    learner failed. What the audit log records of the update."""


@dataclass(frozen=True)
class RoundSummary:
    """A finished round: who took part, what was accepted, how the global model fared."""

    round: int
    status: RoundStatus
    participants: tuple[LearnerId, ...]
    accepted: tuple[LearnerId, ...]
    rejected: dict[LearnerId, str]
    failed: dict[LearnerId, str]
    train_loss: float | None
    """Mean local training loss over accepted updates, weighted by num-examples."""
    candidate_metrics: Metrics
    """Evaluation of the model this round produced (before the guard)."""
    global_metrics: Metrics
    """Evaluation of the global model after the round (the stable one after a rollback)."""
    learner_metrics: dict[LearnerId, Metrics]
    duration: float
    bytes_sent: int
    bytes_received: int
    reason: str | None = None
    """Why the round failed or was rolled back."""
    selection_reasons: dict[LearnerId, str] = field(default_factory=dict)
    """Why the selector chose each participant."""
    aggregation_weights: dict[LearnerId, WeightFactors] = field(default_factory=dict)
    """Each accepted update's weight and its factors (data, reliability, quality)."""
    aggregation: dict[str, Any] = field(default_factory=dict)
    """What the aggregator reports: updates it selected, clipped, the f it assumed."""
    virtual_time: float | None = None
    """Simulated seconds since the run began, in a simulation that models time."""
    learners_online: int | None = None
    """Learners the fleet could reach when the round began (who could have taken part)."""
    privacy: Metrics = field(default_factory=dict)
    """Privacy spent so far (``privacy.sample_epsilon``: the largest record-level ε any
    learner reported under DP-SGD, at ``privacy.sample_delta``); empty without DP."""

    def record(self) -> RoundRecord:
        """This round as one row of the run history."""
        return RoundRecord(
            round=self.round,
            status=self.status,
            participants=len(self.participants),
            accepted=len(self.accepted),
            rejected=len(self.rejected),
            failed=len(self.failed),
            train_loss=self.train_loss,
            duration=self.duration,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            metrics=dict(self.global_metrics),
            virtual_time=self.virtual_time,
            learners_online=self.learners_online,
        )


@dataclass(frozen=True)
class RoundRecord:
    """One row of the run history (checkpointed, logged as CSV)."""

    round: int
    status: RoundStatus
    participants: int
    accepted: int
    rejected: int
    failed: int
    train_loss: float | None
    duration: float
    bytes_sent: int
    bytes_received: int
    metrics: Metrics
    virtual_time: float | None = None
    learners_online: int | None = None


@dataclass(frozen=True)
class PrivacyLoss:
    """The privacy budget spent so far: ε at ``delta`` after ``rounds`` noised rounds."""

    epsilon: float
    delta: float
    rounds: int
    noise_multiplier: float
    clip_norm: float
    """The clip the next round uses (it moves with adaptive clipping)."""
    target_epsilon: float | None = None


PRIVACY_BUDGET_SPENT = "privacy-budget-spent"
"""The ``on_warning`` code with which a run is told that its privacy budget stops it."""


@dataclass(frozen=True)
class DriftFinding:
    """A drift test that exceeded its threshold (:mod:`fedpilot.drift`)."""

    kind: Literal["data", "model"]
    learner: LearnerId | None
    """The learner it concerns; None for the global model."""
    feature: str
    """What drifted: ``label``, a feature (``x[12]``) or a metric (``accuracy``)."""
    score: float
    threshold: float
    test: str
    """``jensen-shannon``, ``psi``, ``ks``, ``local-drop`` or ``mann-kendall``."""
    reference: str
    """What it was compared with: ``own`` (the learner's first summary, or its own
    recent evaluations), ``federation`` (the others' pooled summaries) or ``trend``."""


@dataclass(frozen=True)
class Stop:
    """What a callback returns from ``on_round_end`` to end the run after this round."""

    reason: str


Decision = Stop
"""What ``on_round_end`` may return (only :class:`Stop` today)."""


@dataclass(frozen=True)
class Alert:
    """An alert rule (:mod:`fedpilot.monitoring`) that began or stopped firing."""

    name: str
    """The rule's name (``FedpilotRoundStalled``), as in the shipped Prometheus rules."""
    state: Literal["firing", "resolved"]
    severity: str
    """``warning`` or ``critical``."""
    summary: str
    """What is wrong, for a person: the rule's summary with the offending values."""
    value: float | None
    """The value that crossed the rule's threshold (None once resolved)."""


@dataclass(frozen=True)
class RunResult:
    status: RunStatus
    rounds_completed: int
    final_metrics: Metrics
    rollbacks: int
    weights: Weights
    history: tuple[RoundRecord, ...]
    error: str | None = None
    """Why the run failed, was stopped or interrupted; None when it completed."""
    tracking_error: str | None = None
    """Why the run's tracking (MLflow) failed, when it did: the federation went on
    without it, and its records there are incomplete."""


class Callback:
    """Observes a run. Override the hooks you need; every one is a no-op by default."""

    def on_run_start(self, *, run: RunInfo) -> None:
        """Before the first round of this process (also after a resume)."""

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[LearnerId, ...]) -> None:
        """Learners were chosen; instructions are about to go out."""

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        """A reply arrived and was accepted, rejected, or recorded as a failure."""

    def on_model_rolled_back(
        self, *, ctx: RoundContext, reason: str, candidate: Metrics, stable: Metrics
    ) -> None:
        """The guard refused this round's model; the last stable model stays."""

    def on_fleet_notice(self, *, round: int, notice: FleetNotice) -> None:
        """A learner joined, left or was refused before ``round`` began."""

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> Decision | None:
        """After the round's checkpoint was written. Return :class:`Stop` to end the run
        after this round (it ends ``stopped`` and can be resumed)."""

    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        """A differentially private round ended: the budget spent so far."""

    def on_secure_aggregation_failed(self, *, round: int, reason: str) -> None:
        """The round's sealed updates could not be unmasked; it fails and keeps its model."""

    def on_drift(self, *, round: int, finding: DriftFinding) -> None:
        """A drift test exceeded its threshold after ``round``."""

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        """Something the run worked around (say, a guard metric nobody reports) and
        a person should know: ``code`` is a stable identifier, ``message`` says what."""

    def on_alert(self, *, round: int, alert: Alert) -> None:
        """An alert rule began firing or resolved (possibly while ``round`` is in
        progress, from another thread: a stalled round sends no other event)."""

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        """Once, when the run completes, fails or is interrupted."""

    @property
    def failure(self) -> str | None:
        """Why this observer could not record the run, if it could not (an observer's
        failure never stops the run, but the run's result reports it)."""
        return None


class CallbackList(Callback):
    """Fans every hook out to several callbacks, in order."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks

    def on_run_start(self, *, run: RunInfo) -> None:
        for cb in self.callbacks:
            cb.on_run_start(run=run)

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[LearnerId, ...]) -> None:
        for cb in self.callbacks:
            cb.on_round_start(ctx=ctx, participants=participants)

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        for cb in self.callbacks:
            cb.on_update(ctx=ctx, learner=learner, verdict=verdict)

    def on_model_rolled_back(
        self, *, ctx: RoundContext, reason: str, candidate: Metrics, stable: Metrics
    ) -> None:
        for cb in self.callbacks:
            cb.on_model_rolled_back(ctx=ctx, reason=reason, candidate=candidate, stable=stable)

    def on_fleet_notice(self, *, round: int, notice: FleetNotice) -> None:
        for cb in self.callbacks:
            cb.on_fleet_notice(round=round, notice=notice)

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> Decision | None:
        # Every callback sees the round, even after one asked to stop; the first ask wins.
        decision: Decision | None = None
        for cb in self.callbacks:
            asked = cb.on_round_end(ctx=ctx, summary=summary)
            if decision is None and isinstance(asked, Stop):
                decision = asked
        return decision

    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        for cb in self.callbacks:
            cb.on_privacy_spent(round=round, spent=spent)

    def on_secure_aggregation_failed(self, *, round: int, reason: str) -> None:
        for cb in self.callbacks:
            cb.on_secure_aggregation_failed(round=round, reason=reason)

    def on_drift(self, *, round: int, finding: DriftFinding) -> None:
        for cb in self.callbacks:
            cb.on_drift(round=round, finding=finding)

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        for cb in self.callbacks:
            cb.on_warning(round=round, code=code, message=message)

    def on_alert(self, *, round: int, alert: Alert) -> None:
        for cb in self.callbacks:
            cb.on_alert(round=round, alert=alert)

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        for cb in self.callbacks:
            # Each callback sees the observers' failures so far (MLflow may fail to end
            # its run, and the status file after it says so).
            failure = self.failure
            if failure != result.tracking_error:
                result = replace(result, tracking_error=failure)
            cb.on_run_end(run=run, result=result)

    @property
    def failure(self) -> str | None:
        failures = [f for f in (cb.failure for cb in self.callbacks) if f is not None]
        return "; ".join(failures) if failures else None
