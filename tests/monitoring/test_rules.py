"""The alert rules: the shipped file is the generated one, Prometheus accepts it, and
Prometheus (``promtool test rules``) and the in-process evaluation fire the same alerts,
with the same summaries, on the same series."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from clitools import ROOT, fedpilot
from fedpilot.monitoring.expr import Labels, Metric, Vector
from fedpilot.monitoring.rules import alert_rules, duration, rules_yaml
from fedpilot.spec.monitoring import MonitoringSpec

SHIPPED = ROOT / "deploy" / "prometheus" / "fedpilot-alerts.yml"
PROMTOOL = "/usr/bin/promtool"


def test_the_shipped_rules_are_the_generated_defaults() -> None:
    assert SHIPPED.read_text() == rules_yaml(MonitoringSpec()), (
        "regenerate: fedpilot monitoring rules > deploy/prometheus/fedpilot-alerts.yml"
    )


def test_promtool_checks_the_shipped_rules() -> None:
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(SHIPPED)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_every_issue_alert_has_a_rule() -> None:
    names = {rule.name for rule in alert_rules(MonitoringSpec())}
    assert names == {
        "FedpilotLowParticipation",
        "FedpilotRoundStalled",
        "FedpilotHighUpdateLatency",
        "FedpilotDrift",
        "FedpilotMetricDecline",
        "FedpilotRepeatedRollbacks",
        "FedpilotLearnerSilent",
    }


# Each case: the series (promtool's notation: a value per minute), the minute to evaluate
# at, and the series' values then (what the in-process evaluation reads).
_CASES: list[tuple[str, dict[str, str], int, dict[str, Vector]]] = [
    (
        "FedpilotLowParticipation",
        {"fedpilot_participation_ratio": "0.2x10"},
        6,
        {"fedpilot_participation_ratio": {(): 0.2}},
    ),
    (
        "FedpilotRoundStalled",
        {"fedpilot_last_round_end_timestamp_seconds": "0x40"},
        30,
        {"fedpilot_last_round_end_timestamp_seconds": {(): 0.0}},
    ),
    (
        "FedpilotHighUpdateLatency",
        {"fedpilot_update_latency_p90_seconds": "412.5x10"},
        6,
        {"fedpilot_update_latency_p90_seconds": {(): 412.5}},
    ),
    (
        "FedpilotDrift",
        {'fedpilot_drift_score{learner="l-3", feature="label"}': "0.42x3"},
        1,
        {"fedpilot_drift_score": {(("feature", "label"), ("learner", "l-3")): 0.42}},
    ),
    (
        "FedpilotMetricDecline",
        {'fedpilot_global_metric_decline{name="accuracy"}': "0.25x3"},
        1,
        {"fedpilot_global_metric_decline": {(("name", "accuracy"),): 0.25}},
    ),
    (
        "FedpilotRepeatedRollbacks",
        {"fedpilot_rollbacks_in_a_row": "4x3"},
        1,
        {"fedpilot_rollbacks_in_a_row": {(): 4.0}},
    ),
    (
        "FedpilotLearnerSilent",
        {
            'fedpilot_learner_last_seen_seconds{learner="l-9"}': "0x90",
            'fedpilot_learner_last_seen_seconds{learner="l-1"}': "3000x90",
        },
        70,
        {
            "fedpilot_learner_last_seen_seconds": {
                (("learner", "l-9"),): 0.0,
                (("learner", "l-1"),): 3000.0,
            }
        },
    ),
]


def _expected(name: str, samples: dict[str, Vector], now: float) -> list[dict[str, Any]]:
    """The alerts the in-process evaluation finds firing: what promtool must find too."""
    rule = next(r for r in alert_rules(MonitoringSpec()) if r.name == name)
    found = rule.expr.evaluate(samples, now)
    alerts = []
    for labels, value in sorted(found.items()):
        alerts.append(
            {
                "exp_labels": {**dict(labels), "severity": rule.severity},
                "exp_annotations": {"summary": rule.describe(labels, value)},
            }
        )
    return alerts


def test_prometheus_and_the_in_process_evaluation_fire_alike(tmp_path: Path) -> None:
    tests = []
    for name, series, minute, samples in _CASES:
        expected = _expected(name, samples, now=minute * 60.0)
        assert expected, f"{name}: the in-process evaluation fires nothing"
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected}
                ],
            }
        )
    # A quiet federation fires nothing, in Prometheus as here.
    quiet = {
        "fedpilot_participation_ratio": "1x10",
        "fedpilot_rollbacks_in_a_row": "0x10",
        "fedpilot_update_latency_p90_seconds": "3x10",
    }
    tests.append(
        {
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in quiet.items()],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": rule.name, "exp_alerts": []}
                for rule in alert_rules(MonitoringSpec())
            ],
        }
    )
    spec = tmp_path / "tests.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(SHIPPED)], "tests": tests}))
    done = subprocess.run(
        [PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_silent_learner_is_the_one_that_fires() -> None:
    rule = next(r for r in alert_rules(MonitoringSpec()) if r.name == "FedpilotLearnerSilent")
    samples = _CASES[-1][3]
    fired: dict[Labels, float] = rule.expr.evaluate(samples, now=4200.0)
    assert fired == {(("learner", "l-9"),): 4200.0}


def test_thresholds_and_durations_come_from_the_spec() -> None:
    settings = MonitoringSpec(stalled_round_seconds=2.5, low_participation_for=0.25)
    text = rules_yaml(settings)
    assert "time() - fedpilot_last_round_end_timestamp_seconds > 2.5" in text
    assert "for: 250ms" in text
    assert duration(300) == "300s"


def test_a_metric_selector_reads_only_matching_series() -> None:
    selector = Metric("m", (("name", "accuracy"),))
    vector = {(("name", "accuracy"),): 1.0, (("name", "loss"),): 2.0}
    assert selector.promql() == 'm{name="accuracy"}'
    assert selector.evaluate({"m": vector}, 0.0) == {(("name", "accuracy"),): 1.0}


def test_cli_writes_the_rules_with_a_specs_thresholds(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ntask: {name: digits-mlp}\nmonitoring: {rollbacks_in_a_row: 7}\n")
    done = fedpilot("monitoring", "rules", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "fedpilot_rollbacks_in_a_row >= 7" in done.stdout
    done = fedpilot(
        "monitoring", "rules", str(spec), "--set", "monitoring.webhook_url=ftp://x", cwd=tmp_path
    )
    assert done.returncode == 2 and "webhook_url" in done.stderr


@pytest.mark.parametrize("bad", ["monitoring.low_participation=0", "runtime.metrics_port=70000"])
def test_bad_settings_name_the_field(tmp_path: Path, bad: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ntask: {name: digits-mlp}\n")
    done = fedpilot("spec", "check", str(spec), "--set", bad, cwd=tmp_path)
    assert done.returncode == 2
    assert bad.split("=")[0].split(".")[-1] in done.stderr
    assert "Traceback" not in done.stderr
