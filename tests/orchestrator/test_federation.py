"""A federation you can drive: one round at a time, stopped from another thread, from a
callback or from another process, always resumable to exactly the uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import APPS_DIR
from federations import digits_spec
from fedpilot.launch import open_federation, run_federation
from fedpilot.orchestrator import (
    Callback,
    Federation,
    RoundSummary,
    RunResult,
    Stop,
    load_checkpoint,
)
from fedpilot.spec import FederationSpec, validate_spec
from fedpilot.types import RoundContext


def _events(run_dir: Path) -> list[dict[str, object]]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _same_model(a: RunResult, b: RunResult) -> None:
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    spec = digits_spec(tmp_path_factory.mktemp("whole"), "whole", rounds=5)
    return run_federation(spec)


def _spec(tmp_path: Path, name: str) -> FederationSpec:
    return digits_spec(tmp_path, name, rounds=5)


def test_a_federation_driven_one_round_at_a_time_equals_a_run_to_the_end(
    tmp_path: Path, uninterrupted: RunResult
) -> None:
    with open_federation(_spec(tmp_path, "stepped")) as federation:
        first = federation.step()
        assert first.round == 1 and federation.state.round == 1
        assert load_checkpoint(federation.run_dir).round == 1  # checkpointed before returning
        rounds = [summary.round for summary in federation.rounds()]
        assert rounds == [2, 3, 4, 5] and federation.done
        with pytest.raises(RuntimeError, match="ended"):
            federation.step()
    assert federation.result is not None and federation.result.status == "completed"
    _same_model(federation.result, uninterrupted)


class _StopFromThread(Callback):
    """Asks the federation to stop from another thread once round ``at`` ended."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.federation: Federation | None = None

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        if summary.round == self.at:
            assert self.federation is not None
            worker = threading.Thread(target=self.federation.stop, args=("enough for today",))
            worker.start()
            worker.join()


def test_stopped_from_another_thread_then_resumed_equals_the_uninterrupted_run(
    tmp_path: Path, uninterrupted: RunResult
) -> None:
    spec = _spec(tmp_path, "threaded")
    stopper = _StopFromThread(at=2)
    with open_federation(spec, callbacks=[stopper]) as federation:
        stopper.federation = federation
        result = federation.run()
    assert (result.status, result.error, result.rounds_completed) == (
        "stopped",
        "enough for today",
        2,
    )
    run_dir = federation.run_dir
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "stopped" and status["error"] == "enough for today"
    assert load_checkpoint(run_dir).round == 2

    resumed = run_federation(spec, resume_dir=run_dir)
    assert resumed.status == "completed" and resumed.rounds_completed == 5
    _same_model(resumed, uninterrupted)


class _StopAtAccuracy(Callback):
    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> Stop | None:
        return Stop("target reached") if summary.round == 1 else None


def test_a_callback_stops_the_run_by_asking_not_raising(tmp_path: Path) -> None:
    result = run_federation(_spec(tmp_path, "asked"), callbacks=[_StopAtAccuracy()])
    assert (result.status, result.error, result.rounds_completed) == (
        "stopped",
        "target reached",
        1,
    )


class _StopFromAnotherProcess(Callback):
    """At round 1, another process asks the run (by its directory) to stop."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None

    def on_run_start(self, *, run: object) -> None:
        self.run_dir = run.run_dir  # type: ignore[attr-defined]

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        if summary.round == 1:
            code = (
                "import sys; from pathlib import Path; "
                "from fedpilot.orchestrator import request_stop; "
                "request_stop(Path(sys.argv[1]), 'maintenance window')"
            )
            subprocess.run([sys.executable, "-c", code, str(self.run_dir)], check=True)


def test_another_process_stops_the_run_and_the_resumed_run_goes_on(
    tmp_path: Path, uninterrupted: RunResult
) -> None:
    spec = _spec(tmp_path, "ops")
    result = run_federation(spec, callbacks=[_StopFromAnotherProcess()])
    assert (result.status, result.error, result.rounds_completed) == (
        "stopped",
        "maintenance window",
        1,
    )
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    finished = [e for e in _events(run_dir) if e["event"] == "RunFinished"]
    assert finished[-1]["status"] == "stopped"
    # The request was honoured once: the resumed run is not stopped again.
    resumed = run_federation(spec, resume_dir=run_dir)
    assert resumed.status == "completed"
    _same_model(resumed, uninterrupted)


def test_leaving_the_loop_early_ends_the_run_stopped_with_its_checkpoint(tmp_path: Path) -> None:
    with open_federation(_spec(tmp_path, "left")) as federation:
        for summary in federation.rounds():
            if summary.round == 3:
                break
    assert federation.result is not None
    assert (federation.result.status, federation.result.rounds_completed) == ("stopped", 3)
    assert federation.result.error == "closed before the last round"
    assert load_checkpoint(federation.run_dir).round == 3


def test_flowers_quickstart_numpy_clientapp_runs_with_the_default_guard(tmp_path: Path) -> None:
    """Its evaluation reports no `accuracy` (only a list-valued metric): the guard is
    turned off with a warning before round 1, and the federation runs to its end."""
    spec = validate_spec(
        {
            "name": "quickstart-numpy",
            "task": {
                "flower_clientapp": "numpy_quickstart:app",
                "initial_weights": "numpy_quickstart:initial_weights",
            },
            "data": {"num_learners": 3},
            "rounds": 3,
            "tracking": {"enabled": False},
            "output_dir": str(tmp_path / "runs"),
            "base_dir": str(APPS_DIR),
        }
    )
    assert spec.guard.enabled and spec.guard.metric == "accuracy"
    result = run_federation(spec)
    assert result.status == "completed" and result.rounds_completed == 3
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    warnings = [e for e in _events(run_dir) if e["event"] == "Warning"]
    assert len(warnings) == 1 and "guard.metric" in str(warnings[0]["message"])
