"""Drift detection in real federations: injected label-mix and feature-shift drift is
found within two rounds of its onset, a federation without drift raises nothing, and the
same spec and seed raise the same events, also across an interruption and a resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from tests.federations import StopAfter, digits_spec

from fedpilot.cli.live import LiveView
from fedpilot.drift.transform import DriftMonitor, DriftState
from fedpilot.drift.watch import DriftWatch
from fedpilot.fleet import LocalFleet
from fedpilot.fleet.simulation import build_simulated_fleet
from fedpilot.fleet.simulation.drift import DriftFleet
from fedpilot.launch import run_federation
from fedpilot.orchestrator.events import (
    Callback,
    DriftFinding,
    RoundRecord,
    RoundSummary,
    RunInfo,
)
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.spec.drift import DriftSpec
from fedpilot.types import RoundContext

ONSET = 4


def _spec(tmp_path: Path, name: str, drift: str | None, **changes: Any) -> Any:
    raw: dict[str, Any] = {
        "data": {"num_learners": 6, "partition": "iid"},
        "rounds": 7,
        "sampling": {"fraction": 1.0, "min_learners": 1},
        "drift": {"enabled": True, "every": 1},
        **changes,
    }
    if drift is not None:
        raw["simulation"] = {"drift": {"kind": drift, "round": ONSET, "fraction": 0.34}}
    return digits_spec(tmp_path, name, **raw)


def _drift_events(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    (log,) = (tmp_path / name).rglob("events.jsonl")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return [
        {k: v for k, v in e.items() if k != "time"}
        for e in events
        if e["event"] == EventType.DRIFT_DETECTED
    ]


def _drifting(spec: Any) -> frozenset[str]:
    fleet = build_simulated_fleet(LocalFleet(spec), spec.simulation, spec.seed)
    assert isinstance(fleet, DriftFleet)
    fleet.close()
    return fleet.drifting


@pytest.mark.parametrize("kind", ["label_mix", "feature_shift"])
def test_injected_drift_is_detected_within_two_rounds(tmp_path: Path, kind: str) -> None:
    spec = _spec(tmp_path, kind, kind)
    result = run_federation(spec)
    assert result.status == "completed"
    events = _drift_events(tmp_path, kind)
    drifting = _drifting(spec)
    assert len(drifting) == 2
    data = [e for e in events if e["kind"] == "data"]
    assert {e["learner"] for e in data} == drifting  # nobody else
    assert min(e["round"] for e in data) >= ONSET  # nothing before the onset
    for learner in drifting:
        own = [e for e in data if e["learner"] == learner and e["reference"] == "own"]
        assert own and min(e["round"] for e in own) <= ONSET + 2
        assert all(e["score"] > e["threshold"] for e in own)
    tests = {e["test"] for e in data}
    assert ("jensen-shannon" in tests) == (kind == "label_mix")
    assert "psi" in tests
    first = data[0]
    assert set(first) >= {"round", "kind", "learner", "feature", "score", "threshold", "test"}


def test_a_federation_without_drift_raises_no_drift_event(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "control", None, guard={"enabled": True})
    result = run_federation(spec)
    assert result.status == "completed"
    assert _drift_events(tmp_path, "control") == []
    (log,) = (tmp_path / "control").rglob("events.jsonl")
    updates = [json.loads(x) for x in log.read_text().splitlines() if "UpdateAccepted" in x]
    # Every learner evaluated the model it received on its own data, and said so.
    assert all("drift.local.accuracy" in u["metrics"] for u in updates)


def test_the_same_spec_raises_the_same_events_also_after_a_resume(tmp_path: Path) -> None:
    straight = _spec(tmp_path, "straight", "label_mix")
    run_federation(straight)
    expected = _drift_events(tmp_path, "straight")
    again = _spec(tmp_path, "again", "label_mix")
    run_federation(again)
    assert _drift_events(tmp_path, "again") == expected
    # Interrupted after the onset round's checkpoint: the references (first summaries,
    # from round 1) come back from the checkpoint, so the resumed run still compares
    # the drifted learners with their own past and raises the same events.
    cut = _spec(tmp_path, "cut", "label_mix")
    first = run_federation(cut, callbacks=[StopAfter(ONSET + 1)])
    assert first.status == "interrupted"
    (run_dir,) = [p.parent for p in (tmp_path / "cut").rglob("events.jsonl")]
    resumed = run_federation(cut, resume_dir=run_dir)
    assert resumed.status == "completed"
    assert _drift_events(tmp_path, "cut") == expected
    assert any(e["reference"] == "own" and e["round"] > ONSET + 1 for e in expected)


class _Told(Callback):
    def __init__(self) -> None:
        self.findings: list[tuple[int, DriftFinding]] = []
        self.warnings: list[str] = []

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        self.warnings.append(f"{code}: {message}")

    def on_drift(self, *, round: int, finding: DriftFinding) -> None:
        self.findings.append((round, finding))


def _watch(
    global_metric: list[float], local: dict[str, list[float]], **model: Any
) -> tuple[DriftWatch, _Told]:
    """A watch whose run has ``global_metric`` after rounds 1, 2, ... and whose learners
    evaluated the model they received at rounds 2, 3, ... as ``local`` says."""
    monitor = DriftMonitor()
    state: DriftState = monitor.state
    for learner, values in local.items():
        for round_, value in enumerate(values, start=2):
            state.take_local(learner, round_, value)
    told = _Told()
    watch = DriftWatch(DriftSpec(enabled=True, model=model), monitor, told)
    history = tuple(
        RoundRecord(r, "completed", 1, 1, 0, 0, None, 0.0, 0, 0, {"accuracy": v})
        for r, v in enumerate(global_metric, start=1)
    )
    watch.on_run_start(run=RunInfo("r", Path("r"), None, history=history))  # type: ignore[arg-type]
    return watch, told


def test_a_learner_whose_own_evaluation_falls_while_the_global_holds_is_model_drift() -> None:
    steady = [0.8, 0.81, 0.8, 0.81, 0.8]
    watch, _ = _watch(steady, {"a": [0.8, 0.82, 0.81, 0.6], "b": [0.8, 0.8, 0.81, 0.79]})
    (finding,) = watch.findings(5)
    assert (finding.kind, finding.learner, finding.test) == ("model", "a", "local-drop")
    assert finding.score == pytest.approx(0.22) and finding.threshold == 0.15
    # The global model fell as much: the learner is not the one that changed.
    falling = [0.8, 0.81, 0.8, 0.7, 0.6]
    watch, _ = _watch(falling, {"a": [0.8, 0.82, 0.81, 0.6]})
    assert watch.findings(5) == []


def test_a_steadily_falling_global_metric_is_a_trend() -> None:
    watch, _ = _watch([0.9, 0.88, 0.85, 0.84, 0.8, 0.78, 0.75, 0.71], {})
    (finding,) = watch.findings(8)
    assert (finding.kind, finding.learner, finding.test) == ("model", None, "mann-kendall")
    assert finding.reference == "trend" and finding.score > finding.threshold
    watch, _ = _watch([0.7, 0.75, 0.78, 0.8, 0.81, 0.83, 0.82, 0.84], {})
    assert watch.findings(8) == []


def test_a_round_without_a_number_does_not_hide_the_trend() -> None:
    # One round's evaluation came out NaN (a diverged candidate, an empty test batch):
    # the rounds around it still fall steadily. A NaN in the series made the test's
    # p-value NaN, read as "no trend", for the next `window` rounds.
    nan = float("nan")
    watch, _ = _watch([0.9, 0.88, 0.85, 0.84, nan, 0.8, 0.78, 0.75, 0.71], {})
    summary = RoundSummary(
        10, "completed", (), (), {}, {}, None, {}, {"accuracy": nan}, {}, 0, 0, 0
    )
    watch.on_round_end(ctx=RoundContext("r", 10, 20, 0), summary=summary)
    (finding,) = watch.findings(10)
    assert finding.test == "mann-kendall" and finding.score > finding.threshold


def test_a_global_metric_nobody_reports_is_told_once() -> None:
    watch, told = _watch([], {}, metric="f1")
    for round_ in (1, 2):
        summary = RoundSummary(
            round_, "completed", (), (), {}, {}, None, {}, {"accuracy": 0.5}, {}, 0.0, 0, 0
        )
        watch.on_round_end(ctx=RoundContext("r", round_, 5, 0), summary=summary)
    assert told.warnings == [
        "drift: drift.model.metric 'f1' is not among the global metrics (accuracy): "
        "no model drift test on it"
    ]


def test_the_live_view_shows_a_drift_event() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    finding = DriftFinding("data", "3", "x[12]", 1.7, 0.25, "psi", "own")
    LiveView(console).on_drift(round=9, finding=finding)
    text = console.export_text()
    assert "drift (round 9): learner 3 data x[12] psi 1.7 > 0.25 vs own" in text
