"""The alert rules evaluated in the run's own process, as Prometheus would evaluate them:
every ``evaluation_interval`` seconds (from a thread: a stalled round sends no event) and
at the end of every round, over the run's metrics. A series that satisfies a rule for the
rule's ``for`` fires (``on_alert``, state ``firing``); it resolves once it no longer does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from prometheus_client.registry import Collector

from fedpilot.monitoring.expr import Labels, collect
from fedpilot.monitoring.rules import AlertRule
from fedpilot.orchestrator.events import Alert, Callback, RoundSummary, RunInfo, RunResult
from fedpilot.types import LearnerId, RoundContext

_logger = logging.getLogger(__name__)

_Key = tuple[str, Labels]


class AlertEvaluator(Callback):
    """Evaluates ``rules`` over ``registry`` and tells ``events`` what fires and resolves.

    Args:
        rules: the rules (:func:`fedpilot.monitoring.rules.alert_rules`).
        registry: the run's metrics.
        events: the run's callbacks (the event log, the live view, the webhook).
        interval: seconds between evaluations while the run goes on.
        clock: seconds since the epoch (PromQL's ``time()``).
    """

    def __init__(
        self,
        rules: Sequence[AlertRule],
        registry: Collector,
        events: Callback,
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = tuple(rules)
        self._registry = registry
        self._events = events
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._telling = threading.Lock()
        """One evaluation at a time, told before the next begins (the timer's thread and
        the round's end both evaluate): alerts are told in the order they happened."""
        self._since: dict[_Key, float] = {}
        """Since when each active series has satisfied its rule (pending or firing)."""
        self._firing: set[_Key] = set()
        self._round = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def firing(self) -> frozenset[str]:
        """The rules firing now, by name."""
        with self._lock:
            return frozenset(name for name, _ in self._firing)

    def evaluate(self) -> list[Alert]:
        """One evaluation: tells ``events`` of each alert that began firing or resolved
        and returns them."""
        with self._telling:
            changes, round_ = self._changes()
            for alert in changes:
                self._events.on_alert(round=round_, alert=alert)
        return changes

    def _changes(self) -> tuple[list[Alert], int]:
        with self._lock:
            now = self._clock()
            samples = collect(self._registry)
            changes: list[Alert] = []
            active: set[_Key] = set()
            for rule in self.rules:
                for labels, value in sorted(rule.expr.evaluate(samples, now).items()):
                    key = (rule.name, labels)
                    active.add(key)
                    since = self._since.setdefault(key, now)
                    if key not in self._firing and now - since >= rule.for_seconds:
                        self._firing.add(key)
                        changes.append(
                            Alert(
                                rule.name,
                                "firing",
                                rule.severity,
                                rule.describe(labels, value),
                                value,
                            )
                        )
            for key in sorted(set(self._since) - active):
                del self._since[key]
                if key in self._firing:
                    self._firing.discard(key)
                    changes.append(self._resolved(*key))
            return changes, self._round

    def _resolved(self, name: str, labels: Labels) -> Alert:
        rule = next(r for r in self.rules if r.name == name)
        who = ", ".join(f"{k}={v}" for k, v in labels)
        summary = f"{name} resolved" + (f" ({who})" if who else "")
        return Alert(name, "resolved", rule.severity, summary, None)

    # -- hooks -------------------------------------------------------------------------

    def on_run_start(self, *, run: RunInfo) -> None:
        self._round = run.start_round
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="fedpilot-alerts", daemon=True)
        self._thread.start()

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[LearnerId, ...]) -> None:
        self._round = ctx.round

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self.evaluate()  # the round's own gauges, judged before the next round moves them

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        # What still fires when the run ends stays as the last word on it.
        self.close()

    def close(self) -> None:
        """Stops evaluating."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.evaluate()
            except Exception:  # an observer's failure must not end the evaluations
                _logger.exception("evaluating the alert rules failed")


__all__ = ["AlertEvaluator"]
