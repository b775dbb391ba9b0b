"""The round loop with real ClientApps: bad learners, the guard, failed rounds, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedpilot.orchestrator import load_checkpoint, run_federation
from fedpilot.orchestrator.events import RunResult
from fedpilot.tracking import default_callbacks


def events(result_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (result_dir / "events.jsonl").read_text().splitlines()]


def only_run_dir(spec: Any) -> Path:
    (run_dir,) = [p for p in Path(spec.output_dir).iterdir() if p.is_dir()]
    return run_dir


def test_raising_nan_and_misshapen_learners_do_not_stop_the_run(make_app_spec: Any) -> None:
    spec = make_app_spec(
        task__run_config={
            "raise-partition": 1,
            "nan-partition": 2,
            "shape-partition": 3,
            "zero-partition": 4,
        },
        data={"num_learners": 7},
    )
    result = run_federation(spec, callbacks=default_callbacks(spec))
    assert result.status == "completed" and result.rounds_completed == 3
    for record in result.history:
        assert (record.accepted, record.rejected, record.failed) == (3, 3, 1)
    run_dir = only_run_dir(spec)
    log = events(run_dir)
    rejected = {e["learner"]: e["reason"] for e in log if e["event"] == "UpdateRejected"}
    failed = {e["learner"]: e["reason"] for e in log if e["event"] == "UpdateFailed"}
    assert "non-finite" in rejected["2"]
    assert "shape" in rejected["3"]
    assert "num-examples" in rejected["4"]
    assert "RuntimeError: boom" in failed["1"]
    assert result.final_metrics["accuracy"] > 0.8


def test_round_with_too_few_accepted_updates_keeps_the_model(make_app_spec: Any) -> None:
    spec = make_app_spec(
        task__run_config={"raise-partition": 0, "nan-partition": 1},
        data={"num_learners": 3},
        sampling={"fraction": 1.0, "min_learners": 2},
        rounds=2,
    )
    result = run_federation(spec, callbacks=default_callbacks(spec))
    assert [r.status for r in result.history] == ["failed", "failed"]
    for got, initial in zip(result.weights, [np.zeros((64, 10)), np.zeros(10)], strict=True):
        np.testing.assert_array_equal(got, initial)
    log = events(only_run_dir(spec))
    assert sum(e["event"] == "RoundFailed" for e in log) == 2
    assert "min_learners=2" in next(e for e in log if e["event"] == "RoundFailed")["reason"]


def test_guard_rolls_back_an_injected_bad_round(make_app_spec: Any) -> None:
    spec = make_app_spec(
        task__run_config={"sabotage-round": 3},
        rounds=4,
        guard={"enabled": True, "metric": "accuracy", "mode": "max"},
    )
    result = run_federation(spec, callbacks=default_callbacks(spec))
    statuses = [r.status for r in result.history]
    assert statuses == ["completed", "completed", "rolled_back", "completed"]
    assert result.rollbacks == 1
    # After the rolled-back round the global model is still round 2's.
    assert result.history[2].metrics == result.history[1].metrics
    log = events(only_run_dir(spec))
    (rollback,) = [e for e in log if e["event"] == "ModelRolledBack"]
    assert rollback["round"] == 3 and "accuracy went from" in rollback["reason"]
    assert rollback["candidate"]["accuracy"] < 0.9 * rollback["stable"]["accuracy"]
    assert result.final_metrics["accuracy"] > 0.8


@pytest.mark.parametrize("workers", [0, 2])
def test_same_spec_and_seed_give_the_same_model(make_app_spec: Any, workers: int) -> None:
    # With a pool, replies arrive in a different order each run; the mean must not care.
    spec = make_app_spec(
        sampling={"fraction": 0.6, "min_learners": 1},
        rounds=3,
        runtime={"mode": "local", "workers": workers},
    )
    first: RunResult = run_federation(spec, callbacks=default_callbacks(spec))
    second: RunResult = run_federation(spec, callbacks=default_callbacks(spec))
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_round_is_checkpointed(make_app_spec: Any) -> None:
    spec = make_app_spec(rounds=4)
    result = run_federation(spec, callbacks=default_callbacks(spec))
    run_dir = only_run_dir(spec)
    state = load_checkpoint(run_dir)
    assert state.round == 4 and len(state.history) == 4
    for a, b in zip(state.weights, result.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("round-*"))
    assert kept == ["round-000002.npz", "round-000003.npz", "round-000004.npz"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["rounds_completed"] == 4


@pytest.mark.parametrize("selector", ["random", "plain_selector:EveryAvailable"])
def test_the_ledger_of_learners_is_kept_once_and_checkpointed(
    make_app_spec: Any, selector: str
) -> None:
    """A logging selector's own log is the orchestrator's ledger; any other selector gets a
    ledger of the orchestrator's. Either way it counts every round and is checkpointed."""
    spec = make_app_spec(rounds=3, selection={"name": selector})
    run_federation(spec, callbacks=default_callbacks(spec))
    components = load_checkpoint(only_run_dir(spec)).components
    if selector == "random":
        assert "ledger" not in components
        ledger = components["selector"]["history"]
    else:
        ledger = components["ledger"]
    assert ledger["learners"] == ["0", "1", "2", "3", "4"]
    tried = ledger["columns"].index("tried")
    assert ledger["table"][:, tried].tolist() == [3.0] * 5
