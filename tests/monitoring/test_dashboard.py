"""The Grafana dashboard: the shipped file is the generated one, valid JSON, and every
panel's query reads metrics a run really exports."""

from __future__ import annotations

import json
import re

from clitools import ROOT
from fedpilot.monitoring import FederationMetrics, alert_rules
from fedpilot.monitoring.dashboard import dashboard_json
from fedpilot.monitoring.expr import collect
from fedpilot.orchestrator.events import PrivacyLoss, UpdateVerdict
from fedpilot.spec.monitoring import MonitoringSpec
from fedpilot.types import RoundContext

SHIPPED = ROOT / "deploy" / "grafana" / "fedpilot-dashboard.json"


class _Finding:
    learner, feature, score = "l-0", "label", 0.3


def _exported() -> set[str]:
    """Every sample name a run with updates, DP and a drift finding exports."""
    metrics = FederationMetrics()
    ctx = RoundContext(run_id="r", round=1, total_rounds=2, seed=0, num_learners=2)
    metrics.on_update(ctx=ctx, learner="l-0", verdict=UpdateVerdict(True, duration=0.5))
    metrics.on_privacy_spent(
        round=1,
        spent=PrivacyLoss(epsilon=1.0, delta=1e-5, rounds=1, noise_multiplier=1, clip_norm=1),
    )
    metrics.on_drift(round=1, finding=_Finding())
    metrics.global_metric.labels("accuracy").set(0.5)
    metrics.decline.labels("accuracy").set(0.0)
    return set(collect(metrics.registry))


def test_the_shipped_dashboard_is_the_generated_one() -> None:
    assert SHIPPED.read_text() == dashboard_json(), (
        "regenerate: fedpilot monitoring dashboard > deploy/grafana/fedpilot-dashboard.json"
    )


def test_every_panel_reads_metrics_that_exist() -> None:
    model = json.loads(SHIPPED.read_text())
    exported = _exported()
    assert model["panels"]
    for panel in model["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            if target["expr"].startswith("ALERTS{"):
                continue  # Prometheus's own series of the rules' alerts
            names = set(re.findall(r"\bfedpilot_\w+", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)


def test_every_rule_reads_metrics_that_exist() -> None:
    exported = _exported()
    for rule in alert_rules(MonitoringSpec()):
        assert rule.expr.metrics() <= exported, rule.name
