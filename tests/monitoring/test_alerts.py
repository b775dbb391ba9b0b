"""In-process alerts: Prometheus's pending/firing/resolved semantics over the run's own
metrics, and the webhook (a failed POST is a warning, never the run's end)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from conftest import app_spec
from fedpilot.launch import run_federation
from fedpilot.monitoring import AlertEvaluator, FederationMetrics, alert_rules
from fedpilot.monitoring.expr import collect
from fedpilot.orchestrator.events import Alert, Callback, RoundSummary, UpdateVerdict
from fedpilot.rundir import RunDir
from fedpilot.spec.monitoring import MonitoringSpec
from fedpilot.tracking.event_log import EventLogReader
from fedpilot.types import RoundContext


class _Told(Callback):
    def __init__(self) -> None:
        self.alerts: list[tuple[int, Alert]] = []

    def on_alert(self, *, round: int, alert: Alert) -> None:
        self.alerts.append((round, alert))


def _round(round_: int, accepted: int) -> tuple[RoundContext, RoundSummary]:
    ctx = RoundContext(run_id="r", round=round_, total_rounds=9, seed=0, num_learners=4)
    summary = RoundSummary(
        round=round_,
        status="completed",
        participants=("a", "b", "c", "d"),
        accepted=("a", "b", "c", "d")[:accepted],
        rejected={},
        failed={},
        train_loss=None,
        candidate_metrics={},
        global_metrics={},
        learner_metrics={},
        duration=0.1,
        bytes_sent=0,
        bytes_received=0,
    )
    return ctx, summary


def test_an_alert_fires_after_its_for_and_resolves_once() -> None:
    now = [1000.0]
    metrics = FederationMetrics(cohort_size=lambda known: known)
    told = _Told()
    rules = alert_rules(MonitoringSpec(low_participation_for=60))
    evaluator = AlertEvaluator(rules, metrics.registry, told, interval=3600, clock=lambda: now[0])
    metrics.last_round_end.set(now[0])

    def play(round_: int, accepted: int) -> None:
        ctx, summary = _round(round_, accepted)
        metrics.on_round_start(ctx=ctx, participants=summary.participants)
        metrics.on_round_end(ctx=ctx, summary=summary)
        evaluator.on_round_start(ctx=ctx, participants=summary.participants)

    play(1, accepted=1)
    assert evaluator.evaluate() == []  # pending: low for less than 60 s
    now[0] += 61
    metrics.last_round_end.set(now[0])
    (fired,) = evaluator.evaluate()
    assert (fired.name, fired.state, fired.severity) == (
        "FedpilotLowParticipation",
        "firing",
        "warning",
    )
    assert fired.value == 0.25
    assert fired.summary == (
        "Low participation: 0.25 of the cohort had an update accepted in the latest round"
    )
    assert evaluator.evaluate() == []  # told once
    play(2, accepted=4)
    (resolved,) = evaluator.evaluate()
    assert (resolved.name, resolved.state, resolved.value) == (
        "FedpilotLowParticipation",
        "resolved",
        None,
    )
    assert [(r, a.state) for r, a in told.alerts] == [(1, "firing"), (2, "resolved")]
    assert evaluator.firing == frozenset()


class _ToldWhere(Callback):
    def __init__(self) -> None:
        self.threads: list[str] = []

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        if code == "alert-webhook":
            self.threads.append(threading.current_thread().name)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _monitored(tmp_path: Path, webhook: str) -> Any:
    # Learner 1 sends NaNs every round: 4 of 5 accepted, below a 0.9 participation bar.
    return app_spec(
        tmp_path,
        task={
            "flower_clientapp": "testapps:app",
            "initial_weights": "testapps:initial_weights",
            "run_config": {"nan-partition": 1},
        },
        monitoring={"low_participation": 0.9, "low_participation_for": 0, "webhook_url": webhook},
    )


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return list(EventLogReader(RunDir(run_dir).events))


def test_alerts_reach_the_webhook_and_the_event_log(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/secret-token"
        result = run_federation(_monitored(tmp_path, url))
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "completed"
    (run_dir,) = list((tmp_path / "runs").glob("testapp-*"))
    firing = [e for e in _events(run_dir) if e["event"] == "AlertFiring"]
    assert [e["name"] for e in firing] == ["FedpilotLowParticipation"]
    assert firing[0]["round"] == 1 and firing[0]["value"] == 0.8
    (posted,) = _Receiver.received
    assert posted["alert"] == "FedpilotLowParticipation" and posted["state"] == "firing"
    assert posted["run_id"] == run_dir.name and posted["round"] == 1
    assert posted["summary"] == firing[0]["summary"]


def test_a_webhook_that_fails_is_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    told = _ToldWhere()
    spec = _monitored(tmp_path, f"http://127.0.0.1:{port}/hooks/secret-token")
    result = run_federation(spec, callbacks=[told])
    assert result.status == "completed"
    (run_dir,) = list((tmp_path / "runs").glob("testapp-*"))
    warnings = [e for e in _events(run_dir) if e["event"] == "Warning"]
    assert [w["code"] for w in warnings] == ["alert-webhook"]
    # Told from the run's own thread, as every other warning: the observers it reaches
    # (status.json, MLflow) are not written from two threads at once.
    assert told.threads == [threading.main_thread().name]
    assert "FedpilotLowParticipation" in warnings[0]["message"]
    assert "secret-token" not in warnings[0]["message"]  # a webhook's path is its secret


def test_a_learner_that_never_replied_goes_silent_too() -> None:
    # "b" is asked every round and never replies (it fails, or times out): it has no
    # reply to be silent since, so its silence counts from when it was first asked.
    metrics = FederationMetrics()
    told = _Told()
    rules = alert_rules(MonitoringSpec(learner_silent_seconds=600))
    now = [0.0]
    evaluator = AlertEvaluator(rules, metrics.registry, told, interval=3600, clock=lambda: now[0])
    ctx, summary = _round(1, accepted=1)
    metrics.on_round_start(ctx=ctx, participants=("a", "b"))
    metrics.on_update(ctx=ctx, learner="a", verdict=UpdateVerdict(True, duration=0.1))
    metrics.on_update(ctx=ctx, learner="b", verdict=UpdateVerdict(False, "timeout", failed=True))
    metrics.on_round_end(ctx=ctx, summary=summary)
    samples = collect(metrics.registry)
    assert set(samples["fedpilot_learner_last_seen_seconds"]) == {
        (("learner", "a"),),
        (("learner", "b"),),
    }
    assert samples["fedpilot_learners_seen"][()] == 1  # only "a" ever replied
    metrics.last_round_end.set(time.time() + 10_000)  # no stall: only silence fires
    now[0] = time.time() + 601
    silent = {a.summary for a in evaluator.evaluate() if a.name == "FedpilotLearnerSilent"}
    assert len(silent) == 2 and any("Learner b silent" in s for s in silent)


class _HoldsFirst(Callback):
    """Holds the first evaluation's alert inside ``on_alert`` until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.states: list[str] = []

    def on_alert(self, *, round: int, alert: Alert) -> None:
        if threading.current_thread().name == "first":
            self.entered.set()
            self.release.wait(timeout=30)
        self.states.append(alert.state)


def test_alerts_are_told_in_the_order_they_happened() -> None:
    # The timer thread and the round's end both evaluate: an alert that fired in one must
    # not be told after its resolution found by the other.
    metrics = FederationMetrics()
    told = _HoldsFirst()
    rules = alert_rules(MonitoringSpec(low_participation_for=0))
    evaluator = AlertEvaluator(rules, metrics.registry, told, interval=3600)
    metrics.last_round_end.set(time.time() + 10_000)  # no stall
    metrics.participation.set(0.1)
    first = threading.Thread(target=evaluator.evaluate, name="first")
    first.start()
    assert told.entered.wait(timeout=30)  # "firing" found, being told
    metrics.participation.set(1.0)
    second = threading.Thread(target=evaluator.evaluate, name="second")
    second.start()
    second.join(timeout=2)  # done at once unless it waits for the first to be told
    told.release.set()
    first.join()
    second.join()
    assert told.states == ["firing", "resolved"]
