"""fedpilot's alert rules, defined once: written out as a Prometheus rules file
(``deploy/prometheus/fedpilot-alerts.yml`` is :func:`rules_yaml` of the defaults) and
evaluated in the run's own process (:mod:`fedpilot.monitoring.alerts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from fedpilot.monitoring.expr import Age, Compare, Expr, Labels, Metric
from fedpilot.spec.monitoring import MonitoringSpec

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class AlertRule:
    """One alert: fires for every series its expression returns, once that series has
    been returned for ``for_seconds``."""

    name: str
    expr: Expr
    for_seconds: float
    severity: Severity
    summary: str
    """A Prometheus template: ``{{ $labels.NAME }}`` and ``{{ $value | printf "%.3g" }}``
    are filled in here too."""

    def describe(self, labels: Labels, value: float) -> str:
        """The summary for one firing series (what Prometheus's template gives)."""
        found = dict(labels)

        def fill(match: re.Match[str]) -> str:
            if match.group("label") is not None:
                return found.get(match.group("label"), "")
            return match.group("fmt") % value

        return _TEMPLATE.sub(fill, self.summary)


_TEMPLATE = re.compile(
    r'\{\{\s*(?:\$labels\.(?P<label>\w+)|\$value\s*\|\s*printf\s+"(?P<fmt>%[^"]*)")\s*\}\}'
)


def alert_rules(settings: MonitoringSpec) -> tuple[AlertRule, ...]:
    """The rules with ``settings``' thresholds."""
    return (
        AlertRule(
            "FedpilotLowParticipation",
            Compare(Metric("fedpilot_participation_ratio"), "<", settings.low_participation),
            settings.low_participation_for,
            "warning",
            'Low participation: {{ $value | printf "%.2g" }} of the cohort had an update '
            "accepted in the latest round",
        ),
        AlertRule(
            "FedpilotRoundStalled",
            Compare(
                Age(Metric("fedpilot_last_round_end_timestamp_seconds")),
                ">",
                settings.stalled_round_seconds,
            ),
            0,
            "critical",
            'Round stalled: no round has ended for {{ $value | printf "%.0f" }} s',
        ),
        AlertRule(
            "FedpilotHighUpdateLatency",
            Compare(
                Metric("fedpilot_update_latency_p90_seconds"), ">", settings.update_latency_seconds
            ),
            settings.update_latency_for,
            "warning",
            "High update latency: the latest round's 90th percentile is "
            + '{{ $value | printf "%.3g" }} s',
        ),
        AlertRule(
            "FedpilotDrift",
            Metric("fedpilot_drift_score"),
            0,
            "warning",
            "Drift in {{ $labels.feature }} of {{ $labels.learner }} "
            '(score {{ $value | printf "%.3g" }})',
        ),
        AlertRule(
            "FedpilotMetricDecline",
            Compare(Metric("fedpilot_global_metric_decline"), ">", settings.metric_decline),
            0,
            "warning",
            "Global {{ $labels.name }} declined by "
            + '{{ $value | printf "%.2g" }} (relative) from its best in this run',
        ),
        AlertRule(
            "FedpilotRepeatedRollbacks",
            Compare(Metric("fedpilot_rollbacks_in_a_row"), ">=", settings.rollbacks_in_a_row),
            0,
            "critical",
            'Repeated rollbacks: {{ $value | printf "%.0f" }} rounds rolled back in a row',
        ),
        AlertRule(
            "FedpilotLearnerSilent",
            Compare(
                Age(Metric("fedpilot_learner_last_seen_seconds")),
                ">",
                settings.learner_silent_seconds,
            ),
            0,
            "warning",
            "Learner {{ $labels.learner }} silent: no reply for "
            + '{{ $value | printf "%.0f" }} s',
        ),
    )


def rules_yaml(settings: MonitoringSpec) -> str:
    """The rules as a Prometheus rules file."""
    rules: list[dict[str, Any]] = [
        {
            "alert": rule.name,
            "expr": rule.expr.promql(),
            "for": duration(rule.for_seconds),
            "labels": {"severity": rule.severity},
            "annotations": {"summary": rule.summary},
        }
        for rule in alert_rules(settings)
    ]
    body = yaml.safe_dump(
        {"groups": [{"name": "fedpilot", "rules": rules}]}, sort_keys=False, width=1000
    )
    return _HEADER + body


_HEADER = (
    "# fedpilot's alert rules (Prometheus 2.x rules file), generated from\n"
    "# fedpilot.monitoring.rules by `fedpilot monitoring rules [SPEC]`: the thresholds are\n"
    "# the spec's `monitoring` section, or its defaults without one. Do not edit by hand.\n"
)


def duration(seconds: float) -> str:
    """``seconds`` as a Prometheus duration (``300s``, ``1500ms``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


__all__ = ["AlertRule", "alert_rules", "duration", "rules_yaml"]
