"""`fedpilot server`: the orchestrator in Flower's ServerApp serves the run's metrics on
`runtime.metrics_port` while learners on other processes train."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedpilot.orchestrator.federation import request_stop
from fedpilot.rundir import RunDir
from flower_deploy import LEARNERS, Deployment, credentials, deployment, of

pytestmark = pytest.mark.slow

__all__ = ["credentials", "deployment"]  # the fixtures this module uses


def _round(url: str) -> float:
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return -1.0
    for family in text_string_to_metric_families(text):
        if family.name == "fedpilot_round_duration_seconds":
            return next(s.value for s in family.samples if s.name.endswith("_count"))
    return -1.0


def test_the_server_serves_the_runs_metrics(deployment: Deployment) -> None:
    deployment.write_spec(**{"rounds": 50, "runtime.metrics_port": 0})
    deployment.start_server()
    for partition, name in enumerate(LEARNERS):
        deployment.start_learner(name, partition)
    deployment.wait_for(lambda events: bool(of(events, "RunStarted")))
    run_dir = deployment.run_dir()
    url = RunDir(run_dir).metrics_url.read_text().strip()
    deployment.wait_for(lambda events: _round(url) >= 1)  # a round ended, as served
    scraped = httpx.get(url, timeout=5).text
    assert 'fedpilot_updates_total{outcome="accepted"}' in scraped
    assert "fedpilot_learners_online 3.0" in scraped
    request_stop(run_dir, "seen the metrics")
    assert deployment.server is not None
    deployment.server.communicate(timeout=240)
    assert deployment.server.returncode == 3, deployment.logs()  # stopped, as asked
    assert not RunDir(run_dir).metrics_url.exists()
