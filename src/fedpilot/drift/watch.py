"""The drift tests as a run observer: after every round, each learner that sent a summary
is compared with its own first summary and with the federation's consensus of everyone's
latest ones,
each learner's own evaluation is checked against its recent best while the global metric
holds, and the global metric is tested for a worsening trend. Each test over its
threshold is told to ``events`` as ``on_drift`` (the ``DriftDetected`` event).

It only reads: the summaries and evaluations are in the checkpointed
:class:`~fedpilot.drift.transform.DriftState`, and the global metric's history in the
run's (a resumed run's ``RunInfo.history``), so a resumed run raises the same events as an
uninterrupted one.
"""

from __future__ import annotations

import math

from fedpilot.drift.compare import feature_shift, label_distance, pooled, worsening_trend
from fedpilot.drift.summary import DataSummary
from fedpilot.drift.transform import DriftMonitor
from fedpilot.orchestrator.events import Callback, DriftFinding, RoundSummary, RunInfo
from fedpilot.spec.drift import DriftSpec, DriftThresholds
from fedpilot.types import LearnerId, RoundContext


class DriftWatch(Callback):
    """Runs the drift tests of ``spec`` on what ``monitor`` gathered; tells ``events``."""

    def __init__(self, spec: DriftSpec, monitor: DriftMonitor, events: Callback) -> None:
        self.spec = spec
        self.state = monitor.state
        self.events = events
        self.global_metric: dict[int, float] = {}
        self._told_metric = False

    def on_run_start(self, *, run: RunInfo) -> None:
        metric = self.spec.model.metric
        self.global_metric = {
            r.round: float(r.metrics[metric])
            for r in run.history
            if metric in r.metrics and math.isfinite(r.metrics[metric])
        }

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        round_ = summary.round
        metric = self.spec.model.metric
        value = summary.global_metrics.get(metric)
        if value is not None:
            # A NaN is no measurement: in the series it makes the trend test's p-value NaN.
            if math.isfinite(value):
                self.global_metric[round_] = float(value)
        elif self.spec.model.enabled and summary.global_metrics and not self._told_metric:
            self._told_metric = True
            self.events.on_warning(
                round=round_,
                code="drift",
                message=f"drift.model.metric {metric!r} is not among the global metrics "
                f"({', '.join(sorted(summary.global_metrics))}): no model drift test on it",
            )
        for told, problem in self.state.problems:
            self.events.on_warning(round=told, code="drift", message=problem)
        self.state.problems = []
        for finding in self.findings(round_):
            self.events.on_drift(round=round_, finding=finding)

    def findings(self, round_: int) -> list[DriftFinding]:
        """Every test of ``round_`` over its threshold, learner by learner."""
        found: list[DriftFinding] = []
        latest = self.state.latest
        reporting = sorted(k for k, (r, _) in latest.items() if r == round_)
        # One consensus a round, of every learner's latest summary: a median, so the
        # learner compared with it moves it no more than any other (no leave-one-out
        # pool per learner, which would cost a pass over the federation each).
        pool = pooled([s for _, (_, s) in sorted(latest.items())]) if len(latest) > 2 else None
        for learner in reporting:
            current = latest[learner][1]
            since, reference = self.state.references[learner]
            if since < round_:
                found += self._compare(learner, reference, current, self.spec.reference, "own")
            if self.spec.federation is not None and pool is not None:
                found += self._compare(learner, pool, current, self.spec.federation, "federation")
        if self.spec.model.enabled:
            found += self._learner_drops(round_)
            found += self._trend()
        return found

    def _compare(
        self,
        learner: LearnerId,
        reference: DataSummary,
        current: DataSummary,
        limits: DriftThresholds,
        against: str,
    ) -> list[DriftFinding]:
        found = []
        labels = label_distance(reference, current)
        if labels is not None and labels > limits.labels:
            found.append(
                DriftFinding(
                    "data", learner, "label", labels, limits.labels, "jensen-shannon", against
                )
            )
        shift = feature_shift(reference, current, self.spec.test)
        if shift is not None and shift[0] > limits.features:
            score, feature = shift
            found.append(
                DriftFinding(
                    "data", learner, feature, score, limits.features, self.spec.test, against
                )
            )
        return found

    def _learner_drops(self, round_: int) -> list[DriftFinding]:
        """Learners whose evaluation of the model they received this round fell more than
        ``drop`` below their best of the last ``window`` rounds while the global metric
        (of the models they evaluated) fell by at most ``holds``."""
        model = self.spec.model
        sign = 1.0 if model.mode == "max" else -1.0
        found = []
        for learner in sorted(self.state.local):
            series = self.state.local[learner]
            if not series or series[-1][0] != round_:
                continue
            earlier = [(r, v) for r, v in series[:-1] if r > round_ - model.window]
            if not earlier:
                continue
            best_round, best = max(earlier, key=lambda p: (sign * p[1], -p[0]))
            drop = sign * (best - series[-1][1])
            # A learner at round r evaluated the global model of round r - 1.
            then, now = self._global_at(best_round - 1), self._global_at(round_ - 1)
            if drop <= model.drop or then is None or now is None:
                continue
            if sign * (then - now) <= model.holds:
                found.append(
                    DriftFinding(
                        "model", learner, model.metric, drop, model.drop, "local-drop", "own"
                    )
                )
        return found

    def _trend(self) -> list[DriftFinding]:
        model = self.spec.model
        rounds = sorted(self.global_metric)[-model.window :]
        if len(rounds) < model.window:
            return []
        values = [self.global_metric[r] for r in rounds]
        p, decline = worsening_trend(values, higher_is_better=model.mode == "max")
        if p >= model.trend_p or decline < model.trend_min:
            return []
        return [
            DriftFinding(
                "model", None, model.metric, decline, model.trend_min, "mann-kendall", "trend"
            )
        ]

    def _global_at(self, round_: int) -> float | None:
        """The global metric after ``round_`` (the last known one before, if that round
        measured none); None before any."""
        known = [r for r in self.global_metric if r <= round_]
        return self.global_metric[max(known)] if known else None
