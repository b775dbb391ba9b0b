"""A run never reports success for a model it never trained, and a late reply is never
accepted: the run's result says what happened (issue 13, "False success")."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from clitools import fedpilot
from conftest import APPS_DIR, app_spec
from federations import StopAfter
from fedpilot.fleet import LocalFleet
from fedpilot.launch import run_federation
from fedpilot.rundir import RunDir
from fedpilot.types import Instruction, LearnerId, Reply

# A Flower ClientApp whose updates are float64 (the global model is float32): every one
# is refused by validation. FLOAT64=0 makes it an honest learner.
FLOAT64_APP = textwrap.dedent(
    """
    import os

    import numpy as np
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()


    def initial_weights():
        return [np.zeros((4, 2), np.float32), np.zeros(2, np.float32)]


    @app.train()
    def train(msg, context):
        dtype = np.float64 if os.environ.get("FLOAT64", "1") == "1" else np.float32
        arrays = [(a + 0.1).astype(dtype) for a in msg.content["arrays"].to_numpy_ndarrays()]
        metrics = MetricRecord({"loss": 1.0, "num-examples": 10})
        content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics})
        return Message(content, reply_to=msg)
    """
)

WEIGHTS = "float64_app:initial_weights"

# A guard that never accepts a candidate: every round is rolled back.
REFUSING_GUARD = textwrap.dedent(
    """
    from fedpilot.guard import Guard
    from fedpilot.guard._base import Verdict


    class Never(Guard):
        def judge(self, *, candidate, stable):
            return Verdict(False, "this guard accepts nothing")
    """
)


def _float64_spec(tmp_path: Path, **overrides: Any) -> Any:
    (tmp_path / "float64_app.py").write_text(FLOAT64_APP)
    return app_spec(
        tmp_path,
        task={
            "flower_clientapp": "float64_app:app",
            "initial_weights": "float64_app:initial_weights",
        },
        data={"num_learners": 3},
        sampling={"fraction": 1.0, "min_learners": 1},
        evaluation={"central_every": 0},
        base_dir=str(tmp_path),
        **overrides,
    )


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in RunDir(run_dir).events.read_text().splitlines()]


def test_a_run_whose_every_update_is_rejected_fails_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "float64_app.py").write_text(FLOAT64_APP)
    spec = tmp_path / "float64.yaml"
    spec.write_text(
        "name: float64\n"
        f"task: {{flower_clientapp: 'float64_app:app', initial_weights: '{WEIGHTS}'}}\n"
        "data: {num_learners: 3}\nrounds: 3\nevaluation: {central_every: 0}\n"
        "guard: {enabled: false}\ntracking: {enabled: false}\n"
    )
    out = fedpilot("run", str(spec), "--json", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "failed"
    assert "no round of this run produced a model" in summary["error"]
    assert "float64" in summary["error"]  # why the learners' updates were refused
    run_dir = Path(tmp_path / summary["run_dir"])
    status = json.loads(RunDir(run_dir).status.read_text())
    assert status["status"] == "failed" and status["error"] == summary["error"]
    finished = _events(run_dir)[-1]
    assert finished["event"] == "RunFinished" and finished["status"] == "failed"


def test_a_run_whose_every_round_is_rolled_back_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every round's model thrown away: the run ends with the model it started from.
    (tmp_path / "never_guard.py").write_text(REFUSING_GUARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = app_spec(tmp_path, rounds=2, guard={"enabled": True, "name": "never_guard:Never"})
    result = run_federation(spec)
    assert result.status == "failed"
    assert result.rollbacks == 2
    assert result.error is not None and "2 rolled back" in result.error
    assert "this guard accepts nothing" in result.error


def test_a_resumed_run_whose_every_round_fails_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _float64_spec(tmp_path, rounds=3)
    monkeypatch.setenv("FLOAT64", "0")  # honest until the interruption
    first = run_federation(spec, callbacks=[StopAfter(1)])
    assert first.status == "interrupted" and first.rounds_completed == 1
    run_dir = next((tmp_path / "runs").iterdir())
    monkeypatch.setenv("FLOAT64", "1")  # after the resume every update is refused
    resumed = run_federation(spec, resume_dir=run_dir)
    assert resumed.status == "failed", resumed.error
    # The round kept before the interruption does not make this process's work a success.
    assert first.history[0].status == "completed"
    assert resumed.error is not None and "2 rounds ran, 2 failed" in resumed.error


def test_in_process_late_reply_is_refused_and_the_honest_learners_train(tmp_path: Path) -> None:
    # Issue 13: workers 0, round_timeout 2, one learner sleeping 5 s: its late reply was
    # accepted and the four honest learners failed as "not started before the deadline".
    spec = tmp_path / "slow.yaml"
    spec.write_text(
        "name: slow\n"
        "task: {flower_clientapp: 'testapps:app', initial_weights: 'testapps:initial_weights',\n"
        "       run_config: {sleep-partition: 0, sleep-seconds: 5}}\n"
        "data: {num_learners: 5}\nrounds: 1\nsampling: {fraction: 1.0, min_learners: 3}\n"
        "runtime: {mode: local, workers: 0, round_timeout: 2}\n"
        f"tracking: {{enabled: false}}\nbase_dir: {json.dumps(str(APPS_DIR))}\n"
    )
    out = fedpilot("run", str(spec), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / json.loads(out.stdout)["run_dir"]
    updates = {e["learner"]: e for e in _events(run_dir) if e["event"].startswith("Update")}
    assert updates["0"]["event"] == "UpdateFailed"
    assert "replied after" in updates["0"]["reason"] and "refused" in updates["0"]["reason"]
    assert all(updates[i]["event"] == "UpdateAccepted" for i in "1234")
    completed = [e for e in _events(run_dir) if e["event"] == "RoundCompleted"]
    assert [e["status"] for e in completed] == ["completed"]
    assert sorted(completed[0]["accepted"]) == ["1", "2", "3", "4"]


class _DeadlineIgnoringFleet(LocalFleet):
    """A fleet (a user's, say) that waits for every reply, however late."""

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        del deadline
        return super().dispatch(instructions, deadline=time.monotonic() + 3600)


def test_the_round_refuses_a_late_reply_whatever_fleet_sent_it(tmp_path: Path) -> None:
    spec = app_spec(
        tmp_path,
        rounds=1,
        task__run_config={"sleep-partition": 2, "sleep-seconds": 1.5},
        runtime={"mode": "local", "workers": 0, "round_timeout": 1},
        evaluation={"federated_every": 0},
    )
    result = run_federation(spec, fleet=_DeadlineIgnoringFleet(spec), default_tracking=False)
    assert result.status == "completed"
    assert result.history[0].accepted == 4 and result.history[0].failed == 1
