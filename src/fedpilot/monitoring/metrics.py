"""A run's Prometheus metrics: a Callback that keeps them in its own registry (served by
:class:`~fedpilot.monitoring.endpoint.MetricsEndpoint`).

Each run has its own :class:`~prometheus_client.CollectorRegistry` (never the process's
global one), so several runs in one process, and tests, do not share series. Per-learner
series are bounded (``runtime.metrics_learner_labels``): a federation of 10,000 learners
makes at most that many series per metric. Rejection reasons are sorted into a fixed set
(:func:`~fedpilot.monitoring.reasons.rejection_reason`).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fedpilot.monitoring.reasons import REJECTION_REASONS, rejection_reason
from fedpilot.orchestrator.events import (
    Callback,
    PrivacyLoss,
    RoundSummary,
    RunInfo,
    UpdateVerdict,
)
from fedpilot.types import FleetNotice, LearnerId, Metrics, RoundContext

GLOBAL = "(global)"
"""The ``learner`` label of a drift finding about the global model."""


class DriftReport(Protocol):
    """What the exporter reads of a drift finding (``orchestrator.events.DriftFinding``)."""

    @property
    def learner(self) -> LearnerId | None: ...
    @property
    def feature(self) -> str: ...
    @property
    def score(self) -> float: ...


_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class FederationMetrics(Callback):
    """Keeps a run's metrics up to date from its hooks (serve them with
    :class:`MetricsEndpoint`).

    Args:
        learner_labels: most learners with their own series per metric.
        cohort_size: the cohort a round asks for, from the learners it knows
            (``sampling.size``).
        guarded: the global metric whose decline is watched, and whether higher is better.
        drift_hold_rounds: rounds a drift finding's series stays after it was reported.
    """

    def __init__(
        self,
        *,
        learner_labels: int = 100,
        cohort_size: Callable[[int], int] = lambda known: known,
        guarded: tuple[str, Literal["max", "min"]] = ("accuracy", "max"),
        drift_hold_rounds: int = 5,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._cohort_size = cohort_size
        self._guarded = guarded
        self._drift_hold = drift_hold_rounds
        self._learner_labels = learner_labels
        self._lock = threading.Lock()
        r = self.registry
        self.round = Gauge(
            "fedpilot_round", "The round in progress, or the last one run.", registry=r
        )
        self.round_duration = Histogram(
            "fedpilot_round_duration_seconds", "How long rounds took.", buckets=_SECONDS, registry=r
        )
        self.participants = Gauge(
            "fedpilot_participants", "Learners chosen for the latest round.", registry=r
        )
        self.learners_online = Gauge(
            "fedpilot_learners_online",
            "Learners the fleet could reach when the latest round began.",
            registry=r,
        )
        self.updates = Counter(
            "fedpilot_updates", "Learners' replies by outcome.", ["outcome"], registry=r
        )
        self.rejected = Counter(
            "fedpilot_updates_rejected", "Rejected updates by reason.", ["reason"], registry=r
        )
        for outcome in ("accepted", "rejected", "failed"):
            self.updates.labels(outcome)
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)
        self.global_metric = Gauge(
            "fedpilot_global_metric", "The global model's evaluation.", ["name"], registry=r
        )
        self.decline = Gauge(
            "fedpilot_global_metric_decline",
            "Relative decline of the guarded global metric from its best in this process.",
            ["name"],
            registry=r,
        )
        self.latency = Histogram(
            "fedpilot_update_latency_seconds",
            "Seconds from instruction to reply, per update that arrived.",
            buckets=_SECONDS,
            registry=r,
        )
        self.latency_p90 = Gauge(
            "fedpilot_update_latency_p90_seconds",
            "90th percentile of the latest round's update latencies.",
            registry=r,
        )
        self.bytes = Counter(
            "fedpilot_bytes",
            "Bytes on the wire: upload (learners to server), download (server to learners).",
            ["direction"],
            registry=r,
        )
        for direction in ("upload", "download"):
            self.bytes.labels(direction)
        self.rollbacks = Counter("fedpilot_rollbacks", "Rounds rolled back.", registry=r)
        self.rollbacks_in_a_row = Gauge(
            "fedpilot_rollbacks_in_a_row", "Rounds rolled back since the last kept one.", registry=r
        )
        self.participation = Gauge(
            "fedpilot_participation_ratio",
            "Share of the latest round's cohort whose update was accepted.",
            registry=r,
        )
        self.last_round_end = Gauge(
            "fedpilot_last_round_end_timestamp_seconds",
            "When the latest round ended (the run's start before its first).",
            registry=r,
        )
        self.drift = Gauge(
            "fedpilot_drift_score",
            "Score of recent drift findings (the latest per learner and feature).",
            ["learner", "feature"],
            registry=r,
        )
        # Unknown until a round ends (NaN compares false: no rule fires on it).
        self.participation.set(math.nan)
        self.latency_p90.set(math.nan)
        self.epsilon: Gauge | None = None  # made on the first DP round: absent without DP
        self.last_seen = _LastSeen(learner_labels)
        r.register(self.last_seen)
        self._best: float | None = None
        self._latencies: list[float] = []
        self._cohort = 0
        self._drift_rounds: OrderedDict[LearnerId, dict[str, int]] = OrderedDict()

    # -- hooks -------------------------------------------------------------------------

    def on_run_start(self, *, run: RunInfo) -> None:
        self.round.set(run.start_round - 1)
        self.last_round_end.set(time.time())
        name, _ = self._guarded
        for record in run.history:  # a resumed run's best so far
            if name in record.metrics:
                self._best = self._better(self._best, record.metrics[name])

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[LearnerId, ...]) -> None:
        self.round.set(ctx.round)
        self.participants.set(len(participants))
        self.last_seen.asked(participants)
        with self._lock:
            self._cohort = self._cohort_size(ctx.num_learners)
            self._latencies = []

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        if verdict.accepted:
            self.updates.labels("accepted").inc()
        elif verdict.failed:
            self.updates.labels("failed").inc()
            return  # nothing arrived: no latency, not seen
        else:
            self.updates.labels("rejected").inc()
            self.rejected.labels(rejection_reason(verdict.reason)).inc()
        self.latency.observe(verdict.duration)
        with self._lock:
            self._latencies.append(verdict.duration)
        self.last_seen.seen(learner)

    def on_fleet_notice(self, *, round: int, notice: FleetNotice) -> None:
        if notice.kind == "joined":
            self.last_seen.seen(notice.learner)

    def on_model_rolled_back(
        self, *, ctx: RoundContext, reason: str, candidate: Metrics, stable: Metrics
    ) -> None:
        self.rollbacks.inc()

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self.round_duration.observe(summary.duration)
        if summary.learners_online is not None:
            self.learners_online.set(summary.learners_online)
        # The round counts the server's bytes: it sent the downloads, received the uploads.
        self.bytes.labels("upload").inc(summary.bytes_received)
        self.bytes.labels("download").inc(summary.bytes_sent)
        for name, value in summary.global_metrics.items():
            self.global_metric.labels(name).set(value)
        self._watch_decline(summary.global_metrics)
        if summary.status == "rolled_back":
            self.rollbacks_in_a_row.inc()
        elif summary.status == "completed":
            self.rollbacks_in_a_row.set(0)
        with self._lock:
            latencies, cohort = self._latencies, self._cohort
        # No reply arrived: the latency is unknown, not small.
        self.latency_p90.set(float(np.percentile(latencies, 90)) if latencies else math.nan)
        self.participation.set(len(summary.accepted) / cohort if cohort else 0.0)
        self._expire_drift(summary.round)
        self.last_round_end.set(time.time())

    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        if self.epsilon is None:
            self.epsilon = Gauge(
                "fedpilot_privacy_epsilon",
                "Learner-level privacy spent so far: epsilon at the run's delta.",
                registry=self.registry,
            )
        self.epsilon.set(spent.epsilon)

    def on_drift(self, *, round: int, finding: DriftReport) -> None:
        learner = finding.learner if finding.learner is not None else GLOBAL
        with self._lock:
            features = self._drift_rounds.pop(learner, {})
            features[finding.feature] = round
            self._drift_rounds[learner] = features  # the most recent last
            while len(self._drift_rounds) > self._learner_labels:
                gone, old = self._drift_rounds.popitem(last=False)
                for feature in old:
                    self.drift.remove(gone, feature)
        if learner in self._drift_rounds:
            self.drift.labels(learner, finding.feature).set(finding.score)

    # -- inside ------------------------------------------------------------------------

    def _better(self, best: float | None, value: float) -> float:
        if best is None or math.isnan(best):
            return value
        _, mode = self._guarded
        return max(best, value) if mode == "max" else min(best, value)

    def _watch_decline(self, metrics: Metrics) -> None:
        name, mode = self._guarded
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            return
        self._best = best = self._better(self._best, value)
        worse = best - value if mode == "max" else value - best
        self.decline.labels(name).set(worse / max(abs(best), 1e-12))

    def _expire_drift(self, round_: int) -> None:
        with self._lock:
            for learner in list(self._drift_rounds):
                features = self._drift_rounds[learner]
                for feature, reported in list(features.items()):
                    if round_ - reported >= self._drift_hold:
                        del features[feature]
                        self.drift.remove(learner, feature)
                if not features:
                    del self._drift_rounds[learner]


class _LastSeen(Collector):
    """``fedpilot_learner_last_seen_seconds{learner}``: when each learner last replied
    (or joined), or, one that never has, when it was first asked to train: a learner
    that fails from its first round on is silent too. Shown for the ``limit`` learners
    seen longest ago: those a silence alert is about. ``fedpilot_learners_seen`` counts
    those that replied or joined."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._times: dict[LearnerId, float] = {}
        self._asked: dict[LearnerId, float] = {}
        """Learners asked but never seen: since when."""
        self._lock = threading.Lock()

    def seen(self, learner: LearnerId) -> None:
        now = time.time()
        with self._lock:
            self._times[learner] = now
            self._asked.pop(learner, None)

    def asked(self, learners: tuple[LearnerId, ...]) -> None:
        now = time.time()
        with self._lock:
            for learner in learners:
                if learner not in self._times:
                    self._asked.setdefault(learner, now)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            every = [*self._times.items(), *self._asked.items()]
            shown = heapq.nsmallest(self._limit, every, key=lambda kv: kv[1])
            total = len(self._times)
        family = GaugeMetricFamily(
            "fedpilot_learner_last_seen_seconds",
            "When a learner last replied (or, if it never has, was first asked), seconds "
            "since the epoch (the least recently seen).",
            labels=["learner"],
        )
        for learner, when in shown:
            family.add_metric([learner], when)
        yield family
        yield GaugeMetricFamily(
            "fedpilot_learners_seen", "Learners that replied or joined in this process.", total
        )


__all__ = [
    "GLOBAL",
    "DriftReport",
    "FederationMetrics",
]
