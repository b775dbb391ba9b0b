"""One event vocabulary: every EventType the log writes is read back by the run store and
`fedpilot runs`; warnings and a stopped run's reason reach every reader."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fedpilot.cli.live import LiveView
from fedpilot.cli.run import EXIT_CODES
from fedpilot.cli.runs import runs_app
from fedpilot.orchestrator.events import (
    Alert,
    CallbackList,
    DriftFinding,
    PrivacyLoss,
    RunStatus,
    UpdateVerdict,
)
from fedpilot.orchestrator.vocabulary import MODEL_REGISTRY_EVENTS, EventType
from fedpilot.rundir import RunDir
from fedpilot.tracking import default_callbacks, list_runs, show_run
from fedpilot.tracking.event_log import append_event
from fedpilot.types import FleetNotice

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
REASON = "privacy budget spent (epsilon 8.0)"


def drive_every_hook(build: Any, root: Path, run_id: str = "20260105-all") -> RunDir:
    """A stopped run through the default callbacks that calls every hook at least once
    (each kind of update, notice and round end, two warnings of one code)."""
    spec = build.spec(root, name="vocab", rounds=5, tracking={"enabled": False})
    info = build.run(spec, run_id)
    observers = CallbackList(default_callbacks(spec))
    observers.on_run_start(run=info)
    observers.on_warning(round=0, code="guard.metric", message="no learner reports accuracy")
    summaries = []
    for number, status in ((1, "completed"), (2, "rolled_back"), (3, "failed")):
        ctx = build.ctx(number, total=5, run_id=run_id)
        for kind in ("joined", "left", "refused"):
            observers.on_fleet_notice(round=number, notice=FleetNotice(kind, f"{kind}-{number}"))
        observers.on_round_start(ctx=ctx, participants=("l0", "l1", "bad", "gone"))
        observers.on_update(ctx=ctx, learner="l0", verdict=UpdateVerdict(accepted=True))
        observers.on_update(ctx=ctx, learner="bad", verdict=UpdateVerdict(accepted=False))
        observers.on_update(
            ctx=ctx, learner="gone", verdict=UpdateVerdict(accepted=False, failed=True)
        )
        if status == "rolled_back":
            observers.on_model_rolled_back(ctx=ctx, reason="worse", candidate={}, stable={})
            finding = DriftFinding("data", "l0", "label", 0.5, 0.1, "jensen-shannon", "own")
            observers.on_drift(round=number, finding=finding)
        if status == "failed":
            observers.on_secure_aggregation_failed(round=number, reason="too few shares")
        summary = build.summary(number, status)
        summaries.append(summary)
        observers.on_round_end(ctx=ctx, summary=summary)
        spent = PrivacyLoss(
            epsilon=0.5 * number,
            delta=1e-5,
            rounds=number,
            noise_multiplier=1.0,
            clip_norm=1.0,
            target_epsilon=8.0,
        )
        observers.on_privacy_spent(round=number, spent=spent)
    observers.on_warning(round=3, code="guard.metric", message="still no accuracy")
    stalled = Alert("FedpilotRoundStalled", "firing", "critical", "no round ended", 1300.0)
    observers.on_alert(round=3, alert=stalled)
    observers.on_alert(round=3, alert=replace(stalled, state="resolved", value=None))
    result = build.result(summaries, "stopped", error=REASON)
    observers.on_run_end(run=info, result=result)
    # The model registry's events come after a run's end, appended by fedpilot.model_registry.
    for event in sorted(MODEL_REGISTRY_EVENTS):
        assert append_event(RunDir(info.run_dir).events, event, model="vocab", version="1")
    return RunDir(info.run_dir)


@pytest.fixture
def stopped_run(build: Any, tmp_path: Path) -> RunDir:
    return drive_every_hook(build, tmp_path / "runs")


def _log(run_dir: RunDir) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run_dir.events.read_text().splitlines()]


def test_every_event_type_is_written_and_read_back(stopped_run: RunDir) -> None:
    log = _log(stopped_run)
    written = [e["event"] for e in log]
    assert set(written) == {t.value for t in EventType}
    detail = show_run(stopped_run.path.parent, stopped_run.run_id)
    assert detail.events == {t: written.count(t.value) for t in EventType}
    shown = runner.invoke(
        runs_app, ["show", stopped_run.run_id, "-o", str(stopped_run.path.parent), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    counts = json.loads(shown.stdout)["events"]
    assert counts == {t.value: written.count(t.value) for t in EventType}


def test_unknown_event_types_are_skipped_by_readers(stopped_run: RunDir) -> None:
    with stopped_run.events.open("a") as f:
        f.write('{"event": "FromTheFuture", "time": "2030-01-01T00:00:00+00:00"}\n')
    detail = show_run(stopped_run.path.parent, stopped_run.run_id)
    assert set(detail.events) == set(EventType)
    assert detail.status == "stopped"


def test_a_warning_reaches_the_log_the_status_file_and_runs_show(stopped_run: RunDir) -> None:
    warnings = [e for e in _log(stopped_run) if e["event"] == EventType.WARNING]
    assert [(w["round"], w["code"]) for w in warnings] == [(0, "guard.metric"), (3, "guard.metric")]
    assert warnings[1]["message"] == "still no accuracy"
    status = json.loads(stopped_run.status.read_text())
    assert status["warnings"] == {
        "guard.metric": {"round": 3, "message": "still no accuracy", "count": 2}
    }
    detail = show_run(stopped_run.path.parent, stopped_run.run_id)
    assert [(w.round, w.message) for w in detail.warnings] == [
        (0, "no learner reports accuracy"),
        (3, "still no accuracy"),
    ]
    out = runner.invoke(
        runs_app, ["show", stopped_run.run_id, "-o", str(stopped_run.path.parent)], env=WIDE
    ).stdout
    assert "round 3: still no accuracy [guard.metric]" in out


def test_a_stopped_run_shows_as_stopped_with_its_reason(stopped_run: RunDir) -> None:
    status = json.loads(stopped_run.status.read_text())
    assert (status["status"], status["error"]) == ("stopped", REASON)
    (record,) = list_runs(stopped_run.path.parent)
    assert (record.status, record.error) == ("stopped", REASON)
    root = str(stopped_run.path.parent)
    listed = runner.invoke(runs_app, ["list", "-o", root], env=WIDE).stdout
    assert "stopped" in listed and REASON in listed
    shown = runner.invoke(runs_app, ["show", stopped_run.run_id, "-o", root], env=WIDE).stdout
    assert "stopped" in shown and "Reason" in shown and REASON in shown
    # Without status.json the event log says the same.
    stopped_run.status.unlink()
    (record,) = list_runs(stopped_run.path.parent)
    assert (record.status, record.error) == ("stopped", REASON)


def test_the_live_view_shows_warnings_and_the_stop_reason(build: Any, tmp_path: Path) -> None:
    console = Console(record=True, width=200, force_terminal=False)
    spec = build.spec(tmp_path, tracking={"enabled": False})
    info = build.run(spec)
    view = LiveView(console)
    view.on_run_start(run=info)
    view.on_warning(round=2, code="guard.metric", message="falling back to loss")
    view.on_run_end(run=info, result=build.result([build.summary(1)], "stopped", error=REASON))
    text = console.export_text()
    assert "warning (round 2): falling back to loss [guard.metric]" in text
    assert f"stopped: {REASON}" in text
    assert "· stopped" in text


def test_every_run_status_has_an_exit_code() -> None:
    assert set(EXIT_CODES) == set(get_args(RunStatus))
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
