"""End to end: a real Prometheus server scrapes a running federation (`fedpilot run` in a
subprocess) with fedpilot's rules, and sees them fire on an injected stall and on injected
low participation; the run's own evaluation records the same alerts as events."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import app_spec
from fedpilot.monitoring.rules import rules_yaml
from fedpilot.rundir import RunDir
from fedpilot.spec import FederationSpec
from fedpilot.tracking.event_log import EventLogReader

PROMETHEUS = "/usr/bin/prometheus"
_WAIT = 60.0  # seconds any one thing may take to show up before the test fails


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(what: str, check: Any, timeout: float = _WAIT) -> Any:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")


@contextlib.contextmanager
def _prometheus(tmp: Path, target: str, rules: str) -> Iterator[str]:
    """A Prometheus server on loopback scraping ``target`` every second with ``rules``."""
    tmp.mkdir()
    (tmp / "rules.yml").write_text(rules)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [{"job_name": "fedpilot", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{_free_port()}"
    log = (tmp / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{address}"
    try:
        _until("Prometheus to be ready", lambda: _ready(url, process))
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "Prometheus exited"
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _alerts(url: str) -> dict[str, str]:
    """Prometheus's alerts now: name → state (``pending`` or ``firing``)."""
    body = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()
    return {a["labels"]["alertname"]: a["state"] for a in body["data"]["alerts"]}


def _start_run(spec: FederationSpec, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """`fedpilot run` on ``spec``; returns the process and the run directory, once the run
    serves its metrics."""
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.resolved()))
    process = subprocess.Popen(
        [sys.executable, "-m", "fedpilot", "run", str(path)],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def served() -> Path | None:
        assert process.poll() is None, f"the run ended early: {process.communicate()[0]}"
        found = list(spec.output_dir.glob("*/metrics.url"))
        return found[0].parent if found and found[0].read_text().strip() else None

    return process, _until("the run to serve its metrics", served)


def _target(run_dir: Path) -> str:
    url = RunDir(run_dir).metrics_url.read_text().strip()
    return url.removeprefix("http://").removesuffix("/metrics")


def _watched(tmp: Path, *, hold_round: int, **overrides: Any) -> FederationSpec:
    """The gated test app (:mod:`gated`), serving metrics on any free port, whose learners
    hold round ``hold_round`` until the test writes ``tmp/release``."""
    release = tmp / "release"
    spec = app_spec(
        tmp,
        rounds=3,
        sampling__min_learners=1,
        runtime={"mode": "local", "workers": 0, "round_timeout": 120, "metrics_port": 0},
        **overrides,
    )
    config = {**spec.task.run_config, "hold-until": str(release), "hold-round": hold_round}
    task = spec.task.model_copy(
        update={"flower_clientapp": "gated:app", "initial_weights": "gated:initial_weights"}
    )
    return spec.model_copy(update={"task": task.model_copy(update={"run_config": config})})


def _logged_alerts(run_dir: Path) -> list[tuple[str, str]]:
    return [
        (str(e["name"]), str(e["state"]))
        for e in EventLogReader(RunDir(run_dir).events)
        if e.get("event") in ("AlertFiring", "AlertResolved")
    ]


def _finish(process: subprocess.Popen[str], release: Path) -> str:
    release.write_text("go\n")
    out, _ = process.communicate(timeout=_WAIT)
    assert process.returncode == 0, out
    return out


@pytest.mark.slow
def test_prometheus_fires_on_a_stalled_round(tmp_path: Path) -> None:
    spec = _watched(
        tmp_path,
        hold_round=2,
        monitoring={"stalled_round_seconds": 2, "evaluation_interval": 0.2},
    )
    assert spec.monitoring is not None
    process, run_dir = _start_run(spec, tmp_path)
    try:
        with _prometheus(tmp_path / "prom", _target(run_dir), rules_yaml(spec.monitoring)) as url:
            seen: dict[str, str] = {}

            def stalled() -> bool:
                seen.update(_alerts(url))
                return seen.get("FedpilotRoundStalled") == "firing"

            _until("Prometheus to fire FedpilotRoundStalled", stalled)
            assert "FedpilotLowParticipation" not in seen  # every learner's update counts
    finally:
        out = _finish(process, tmp_path / "release")
    logged = _logged_alerts(run_dir)
    fired = logged.index(("FedpilotRoundStalled", "firing"))
    # Rounds end again once the learners go on: the stall resolves in the run too.
    assert ("FedpilotRoundStalled", "resolved") in logged[fired:], logged
    assert "alert FedpilotRoundStalled firing" in out  # the live view shows it


@pytest.mark.slow
def test_prometheus_fires_on_low_participation(tmp_path: Path) -> None:
    # Four of five learners drop out of every round; the last round holds the run open
    # until Prometheus has seen it.
    spec = _watched(
        tmp_path,
        hold_round=3,
        simulation={"stragglers": {"fraction": 0.8, "policy": "drop"}},
        monitoring={"low_participation_for": 1, "evaluation_interval": 0.2},
    )
    assert spec.monitoring is not None
    process, run_dir = _start_run(spec, tmp_path)
    try:
        with _prometheus(tmp_path / "prom", _target(run_dir), rules_yaml(spec.monitoring)) as url:
            seen: dict[str, str] = {}

            def low() -> bool:
                seen.update(_alerts(url))
                return seen.get("FedpilotLowParticipation") == "firing"

            _until("Prometheus to fire FedpilotLowParticipation", low)
            assert "FedpilotRoundStalled" not in seen
            ratio = httpx.get(
                f"{url}/api/v1/query", params={"query": "fedpilot_participation_ratio"}, timeout=5
            ).json()["data"]["result"]
            assert float(ratio[0]["value"][1]) == pytest.approx(0.2)
    finally:
        _finish(process, tmp_path / "release")
    logged = _logged_alerts(run_dir)
    assert ("FedpilotLowParticipation", "firing") in logged
    assert "FedpilotRoundStalled" not in {name for name, _ in logged}
