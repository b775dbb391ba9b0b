"""A Grafana dashboard over a run's metrics (``deploy/grafana/fedpilot-dashboard.json`` is
:func:`dashboard_json`): progress, participation, updates, latency, bytes, the global
metrics, drift, privacy and the learners seen longest ago."""

from __future__ import annotations

import json
from typing import Any


def _quantile(q: float, histogram: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[{window}])))"


_PANELS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    # title, kind, unit, PromQL expressions
    ("Round", "stat", "none", ("fedpilot_round",)),
    (
        "Learners online / chosen", "timeseries", "none",
        ("fedpilot_learners_online", "fedpilot_participants"),
    ),
    (
        "Participation (accepted share of the cohort)", "timeseries", "percentunit",
        ("fedpilot_participation_ratio",),
    ),
    (
        "Updates by outcome (per minute)", "timeseries", "none",
        ("sum by (outcome) (rate(fedpilot_updates_total[5m])) * 60",),
    ),
    (
        "Rejections by reason (per minute)", "timeseries", "none",
        ("sum by (reason) (rate(fedpilot_updates_rejected_total[5m])) * 60",),
    ),
    ("Global metrics", "timeseries", "none", ("fedpilot_global_metric",)),
    (
        "Decline of the guarded metric from its best", "timeseries", "percentunit",
        ("fedpilot_global_metric_decline",),
    ),
    (
        "Round duration (p50, p90)", "timeseries", "s",
        (
            _quantile(0.5, "fedpilot_round_duration_seconds", "10m"),
            _quantile(0.9, "fedpilot_round_duration_seconds", "10m"),
        ),
    ),
    (
        "Update latency (p90 of the latest round; p50 over 5m)", "timeseries", "s",
        (
            "fedpilot_update_latency_p90_seconds",
            _quantile(0.5, "fedpilot_update_latency_seconds", "5m"),
        ),
    ),
    (
        "Bytes per second", "timeseries", "Bps",
        ("sum by (direction) (rate(fedpilot_bytes_total[5m]))",),
    ),
    (
        "Rollbacks", "timeseries", "none",
        ("increase(fedpilot_rollbacks_total[1h])", "fedpilot_rollbacks_in_a_row"),
    ),
    (
        "Seconds since the last round ended", "stat", "s",
        ("time() - fedpilot_last_round_end_timestamp_seconds",),
    ),
    ("Drift scores", "table", "none", ("fedpilot_drift_score",)),
    ("Privacy spent (epsilon)", "timeseries", "none", ("fedpilot_privacy_epsilon",)),
    (
        "Learners seen longest ago (seconds since last reply)", "table", "s",
        ("topk(20, time() - fedpilot_learner_last_seen_seconds)",),
    ),
    (
        "Firing fedpilot alerts", "table", "none",
        ('ALERTS{alertname=~"Fedpilot.*", alertstate="firing"}',),
    ),
)  # fmt: skip


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a Prometheus data source chosen on import)."""
    panels = []
    for index, (title, kind, unit, exprs) in enumerate(_PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": kind,
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "expr": expr,
                        "instant": kind == "table",
                        "legendFormat": "__auto",
                    }
                    for n, expr in enumerate(exprs)
                ],
            }
        )
    return {
        "title": "fedpilot federation",
        "uid": "fedpilot-federation",
        "tags": ["fedpilot"],
        "schemaVersion": 39,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "panels": panels,
    }


def dashboard_json() -> str:
    """:func:`dashboard` as the file ``deploy/grafana/fedpilot-dashboard.json`` holds it."""
    return json.dumps(dashboard(), indent=2) + "\n"


__all__ = ["dashboard", "dashboard_json"]
