"""The ``monitoring`` section: fedpilot's alert rules evaluated in the run's own process,
their thresholds, and where firing alerts are posted.

The same thresholds make the Prometheus rules file (``fedpilot monitoring rules SPEC``;
``deploy/prometheus/fedpilot-alerts.yml`` holds the defaults), so an alert means the same
with and without a Prometheus server. The metrics endpoint itself is ``runtime.metrics_port``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from fedpilot.spec.sections import Section


class MonitoringSpec(Section):
    """Alert rules evaluated in-process: each alert is an ``AlertFiring`` event (and an
    ``AlertResolved`` one when it stops), a line in the live view, and a POST to
    ``webhook_url`` if set."""

    evaluation_interval: float = Field(
        default=5.0, gt=0, le=3600, description="Seconds between two evaluations of the rules."
    )
    webhook_url: str | None = Field(
        default=None,
        description="POST each alert as JSON here (http or https); a failed POST is a "
        "warning, never a reason to stop the run.",
    )
    webhook_timeout: float = Field(
        default=5.0, gt=0, le=300, description="Seconds a webhook POST may take."
    )
    low_participation: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="FedpilotLowParticipation: share of a round's cohort whose update was "
        "accepted, below which the round counts as poorly attended.",
    )
    low_participation_for: float = Field(
        default=300.0, ge=0, description="Seconds participation must stay low before it fires."
    )
    stalled_round_seconds: float = Field(
        default=1200.0,
        gt=0,
        description="FedpilotRoundStalled: seconds without a round ending (or, before the "
        "first, since the run started).",
    )
    update_latency_seconds: float = Field(
        default=300.0,
        gt=0,
        description="FedpilotHighUpdateLatency: the latest round's 90th-percentile update "
        "latency above which it fires.",
    )
    update_latency_for: float = Field(
        default=300.0, ge=0, description="Seconds latency must stay high before it fires."
    )
    metric_decline: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="FedpilotMetricDecline: relative decline of the global guard.metric from "
        "its best value in this process, above which it fires.",
    )
    rollbacks_in_a_row: int = Field(
        default=3, ge=1, description="FedpilotRepeatedRollbacks: rounds rolled back in a row."
    )
    learner_silent_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="FedpilotLearnerSilent: seconds since a learner last replied.",
    )
    drift_hold_rounds: int = Field(
        default=5,
        ge=1,
        description="FedpilotDrift: rounds a drift finding keeps its series (and the alert) "
        "after it was reported.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"`webhook_url` must be an http:// or https:// URL, got {value!r}")
        return value
