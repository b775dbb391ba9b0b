"""Watching a run: its Prometheus metrics (``runtime.metrics_port``), fedpilot's alert rules
(one definition for a Prometheus server and for the run's own process), the webhook
alerts are posted to, and a Grafana dashboard over the metrics.

:func:`observers` is what :mod:`fedpilot.launch` adds to a run that asks for any of it.
"""

from __future__ import annotations

from fedpilot.monitoring.alerts import AlertEvaluator
from fedpilot.monitoring.endpoint import MetricsEndpoint
from fedpilot.monitoring.metrics import FederationMetrics
from fedpilot.monitoring.reasons import rejection_reason
from fedpilot.monitoring.rules import AlertRule, alert_rules, rules_yaml
from fedpilot.orchestrator.events import Callback, RunInfo, RunResult
from fedpilot.rundir import RunDir
from fedpilot.spec import FederationSpec


def observers(spec: FederationSpec, events: Callback) -> list[Callback]:
    """The metrics, the endpoint serving them (started now: a port that cannot be had is
    a :class:`~fedpilot.errors.SpecError` before the run starts), the in-process alerts
    and the webhook that ``spec`` asks for, in the order they must be told; empty when it
    asks for none. ``events`` is the run's callbacks, which the alerts are told to."""
    runtime, settings = spec.runtime, spec.monitoring
    if runtime.metrics_port is None and settings is None:
        return []
    metrics = FederationMetrics(
        learner_labels=runtime.metrics_learner_labels,
        cohort_size=spec.sampling.size,
        guarded=(spec.guard.metric, spec.guard.mode),
        drift_hold_rounds=settings.drift_hold_rounds if settings is not None else 5,
    )
    found: list[Callback] = [metrics]
    if runtime.metrics_port is not None:
        endpoint = MetricsEndpoint(
            metrics.registry, host=runtime.metrics_host, port=runtime.metrics_port
        )
        found.append(_Serving(endpoint))
    if settings is not None:
        found.append(
            AlertEvaluator(
                alert_rules(settings),
                metrics.registry,
                events,
                interval=settings.evaluation_interval,
            )
        )
        if settings.webhook_url is not None:
            from fedpilot.monitoring.webhook import AlertWebhook  # httpx, for runs that post

            found.append(
                AlertWebhook(settings.webhook_url, events, timeout=settings.webhook_timeout)
            )
    return found


class _Serving(Callback):
    """Writes where the run's metrics are served (``metrics.url`` in the run directory)
    when the run starts; stops serving when it ends."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        self.endpoint = endpoint

    def on_run_start(self, *, run: RunInfo) -> None:
        RunDir(run.run_dir).metrics_url.write_text(self.endpoint.url + "\n")

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        self.close()
        RunDir(run.run_dir).metrics_url.unlink(missing_ok=True)

    def close(self) -> None:
        self.endpoint.close()


__all__ = [
    "AlertEvaluator",
    "AlertRule",
    "FederationMetrics",
    "MetricsEndpoint",
    "alert_rules",
    "observers",
    "rejection_reason",
    "rules_yaml",
]
