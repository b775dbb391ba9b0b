"""EventLogCallback: one JSON object a line, every hook, appended across resumes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fedpilot.orchestrator.events import RunInfo
from fedpilot.rundir import RunDir
from fedpilot.tracking import EventLogCallback, to_json


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_hook_is_one_json_line(build: Any, tmp_path: Path) -> None:
    info = build.run(build.spec(tmp_path))
    build.drive_events(info, [1, 2])
    events = _lines(RunDir(info.run_dir).events)
    names = [e["event"] for e in events]
    per_round = ["RoundStarted", "UpdateAccepted", "UpdateAccepted", "UpdateRejected"]
    per_round.append("UpdateFailed")
    assert names == [
        "RunStarted",
        *per_round,
        "RoundCompleted",
        *per_round,
        "ModelRolledBack",
        "RoundCompleted",
        "RunFinished",
    ]
    for event in events:
        assert list(event)[:2] == ["event", "time"]
        assert datetime.fromisoformat(event["time"]).utcoffset() == UTC.utcoffset(None)
    assert [e.get("round") for e in events[1:6]] == [1] * 5


def test_event_fields(build: Any, tmp_path: Path) -> None:
    info = build.run(build.spec(tmp_path))
    build.drive_events(info, [1, 2])
    events = _lines(RunDir(info.run_dir).events)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_name.setdefault(event["event"], []).append(event)

    started = by_name["RunStarted"][0]
    assert started["run_id"] == "run-1"
    assert started["name"] == "tracking-demo"
    assert started["spec_hash"] == info.spec.digest()
    assert started["total_rounds"] == 3
    assert "spec" not in started and "task" in started

    assert by_name["RoundStarted"][0]["participants"] == ["l0", "l1", "bad", "gone"]
    rejected = by_name["UpdateRejected"][0]
    assert (rejected["learner"], rejected["reason"], rejected["round"]) == (
        "bad",
        "norm too large",
        1,
    )
    failed = by_name["UpdateFailed"][0]
    assert (failed["learner"], failed["reason"]) == ("gone", "timed out")
    accepted = by_name["UpdateAccepted"][1]
    assert accepted["num_examples"] == 4 and accepted["metrics"] == {"loss": 0.25}

    rolled = by_name["ModelRolledBack"][0]
    assert rolled["round"] == 2 and rolled["reason"] == "accuracy dropped"
    completed = by_name["RoundCompleted"][1]
    assert completed["status"] == "rolled_back"
    assert completed["rejected"] == {"bad": "update norm 1e9 exceeds the bound 100"}
    assert completed["global_metrics"]["accuracy"] == 0.7

    finished = by_name["RunFinished"][0]
    assert finished["status"] == "completed" and finished["rollbacks"] == 1
    assert "weights" not in finished and "history" not in finished


def test_a_failed_round_and_a_resumed_run_append(build: Any, tmp_path: Path) -> None:
    spec = build.spec(tmp_path)
    info = build.run(spec)
    build.drive_events(info, [1], status="interrupted")
    resumed = build.run(spec, start_round=2)
    log = EventLogCallback()
    log.on_run_start(run=resumed)
    ctx = build.ctx(2)
    log.on_round_end(ctx=ctx, summary=build.summary(2, "failed"))
    log.on_run_end(run=resumed, result=build.result([], "failed", error="boom"))
    events = _lines(RunDir(info.run_dir).events)
    assert [e["event"] for e in events].count("RunStarted") == 2
    assert events[-2]["event"] == "RoundFailed"
    assert events[-1]["error"] == "boom"
    assert events[-1]["rounds_completed"] == 0


def test_hooks_before_start_and_unwritable_dirs_do_not_raise(build: Any, tmp_path: Path) -> None:
    log = EventLogCallback()
    log.on_round_start(ctx=build.ctx(1), participants=())
    blocker = tmp_path / "file"
    blocker.write_text("")
    spec = build.spec(tmp_path)
    log.on_run_start(run=RunInfo(run_id="x", run_dir=blocker / "x", spec=spec))
    log.on_run_end(
        run=RunInfo(run_id="x", run_dir=blocker / "x", spec=spec), result=build.result([])
    )
    assert log.path is None


@dataclass
class _Payload:
    weights: Any
    when: datetime
    where: Path


def test_to_json_is_generic() -> None:
    value = _Payload(
        weights={"a": np.float64(0.5), "b": [np.int32(3)], "nan": float("nan")},
        when=datetime(2026, 1, 2, tzinfo=UTC),
        where=Path("/x/y"),
    )
    assert to_json(value) == {
        "weights": {"a": 0.5, "b": [3], "nan": None},
        "when": "2026-01-02T00:00:00+00:00",
        "where": "/x/y",
    }
    assert to_json(np.arange(3)) == [0, 1, 2]
