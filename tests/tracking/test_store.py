"""Run store queries over hand-made run folders: status.json first, events.jsonl as fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedpilot.errors import UserError
from fedpilot.rundir import RunDir
from fedpilot.tracking import (
    RunDetail,
    find_run_dir,
    list_runs,
    show_run,
)


def make_runs(build: Any, root: Path) -> None:
    """Three runs in ``root``, each with a different amount of on-disk evidence.

    - ``20260101-aaa``: finished; status.json, events, spec, MLflow id (the full set)
    - ``20260102-aab``: crashed mid-run; events and spec only, a torn last line
    - ``20260103-bbb``: just created; spec only
    """
    spec = build.spec(root, name="digits", guard={"metric": "loss", "mode": "min"})
    full = build.run(spec, "20260101-aaa")
    build.drive_events(full, [1, 2, 3])
    RunDir(full.run_dir).mlflow_run_id.write_text("abc123\n")
    RunDir(full.run_dir).status.write_text(
        json.dumps(
            {
                "run_id": full.run_id,
                "name": "digits",
                "status": "completed",
                "rounds_completed": 3,
                "total_rounds": 3,
                "final_metrics": {"accuracy": 0.8, "loss": 0.25},
                "rollbacks": 1,
                "started_at": "2026-01-01T10:00:00+00:00",
                "updated_at": "2026-01-01T10:05:00+00:00",
            }
        )
    )
    (full.run_dir / "spec.yaml").write_text(yaml.safe_dump(spec.resolved()))

    crashed_spec = build.spec(root, name="mnist", rounds=5)
    crashed = build.run(crashed_spec, "20260102-aab")
    build.drive_events(crashed, [1, 2], status="interrupted")
    resumed = build.run(crashed_spec, "20260102-aab", start_round=2)
    from fedpilot.tracking import EventLogCallback

    log = EventLogCallback()
    log.on_run_start(run=resumed)
    log.on_round_end(ctx=build.ctx(2, total=5), summary=build.summary(2, accuracy=0.9))
    log.on_round_end(ctx=build.ctx(3, total=5), summary=build.summary(3, "failed", accuracy=0.9))
    log.close()
    with RunDir(crashed.run_dir).events.open("a") as f:
        f.write('{"event": "RoundStarted", "ro')  # the process died mid-write
    (crashed.run_dir / "spec.yaml").write_text(yaml.safe_dump(crashed_spec.resolved()))

    fresh = root / "20260103-bbb"
    fresh.mkdir()
    (fresh / "spec.yaml").write_text(yaml.safe_dump({"name": "fresh", "rounds": 7}))
    (root / "mlartifacts").mkdir()  # not a run


@pytest.fixture
def runs_dir(build: Any, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_runs(build, root)
    return root


def test_list_runs_reads_status_then_events_then_spec(runs_dir: Path) -> None:
    records = {r.run_id: r for r in list_runs(runs_dir)}
    assert set(records) == {"20260101-aaa", "20260102-aab", "20260103-bbb"}

    full = records["20260101-aaa"]
    assert (full.name, full.status, full.rounds_completed, full.total_rounds) == (
        "digits",
        "completed",
        3,
        3,
    )
    assert full.final_metrics == {"accuracy": 0.8, "loss": 0.25}
    assert (full.rollbacks, full.mlflow_run_id) == (1, "abc123")
    assert (full.main_metric, full.main_value) == ("loss", 0.25)  # the guard's metric
    assert full.started_at is not None and full.started_at.year == 2026

    crashed = records["20260102-aab"]
    assert (crashed.name, crashed.status) == ("mnist", "running")  # restarted, never finished
    assert (crashed.rounds_completed, crashed.total_rounds) == (3, 5)
    assert crashed.main_metric == "accuracy"
    assert crashed.final_metrics["accuracy"] == pytest.approx(0.9)
    assert crashed.mlflow_run_id is None

    fresh = records["20260103-bbb"]
    assert (fresh.name, fresh.status, fresh.rounds_completed, fresh.total_rounds) == (
        "fresh",
        "unknown",
        0,
        7,
    )
    assert fresh.started_at is None and fresh.main_metric is None


def test_list_runs_is_newest_first_and_empty_for_a_missing_dir(
    runs_dir: Path, tmp_path: Path
) -> None:
    # The crashed run's events carry today's time; the finished one says 2026-01-01.
    order = [r.run_id for r in list_runs(runs_dir)]
    assert order[-1] == "20260103-bbb"  # no start time at all: last
    assert order.index("20260102-aab") < order.index("20260101-aaa")
    assert list_runs(tmp_path / "nowhere") == []


def test_show_run_by_prefix_has_per_round_history(runs_dir: Path) -> None:
    detail = show_run(runs_dir, "20260101")
    assert isinstance(detail, RunDetail)
    assert detail.run_id == "20260101-aaa"
    assert [r.round for r in detail.rounds] == [1, 2, 3]
    assert [r.status for r in detail.rounds] == ["completed", "rolled_back", "completed"]
    first = detail.rounds[0]
    assert (first.participants, first.accepted, first.rejected, first.failed) == (4, 2, 1, 1)
    assert first.metrics["accuracy"] == pytest.approx(0.6)
    assert first.train_loss == 1.0 and first.duration == 1.5
    assert detail.rounds[1].reason == "accuracy dropped"
    assert detail.spec_hash is not None and detail.error is None


def test_show_run_replaces_a_round_rerun_after_resume(runs_dir: Path) -> None:
    detail = show_run(runs_dir, "20260102-aab")
    assert [(r.round, r.status) for r in detail.rounds] == [
        (1, "completed"),
        (2, "completed"),  # re-run after the resume: no longer rolled back
        (3, "failed"),
    ]
    assert detail.rounds[1].metrics["accuracy"] == pytest.approx(0.9)


def test_show_run_without_events(runs_dir: Path) -> None:
    detail = show_run(runs_dir, "20260103-bbb")
    assert detail.rounds == () and detail.name == "fresh"


def test_unknown_and_ambiguous_run_ids_are_user_errors(runs_dir: Path) -> None:
    with pytest.raises(UserError, match=r"no run matches 'zzz'"):
        show_run(runs_dir, "zzz")
    with pytest.raises(UserError, match=r"ambiguous: it matches 3 runs \(20260101-aaa, 20260102"):
        find_run_dir(runs_dir, "2026010")
    assert find_run_dir(runs_dir, "20260102").name == "20260102-aab"
    with pytest.raises(UserError, match="no such directory"):
        show_run(runs_dir / "nowhere", "x")
    with pytest.raises(UserError, match="no run matches"):
        show_run(runs_dir, "mlartifacts")


def test_to_dict_is_json(runs_dir: Path) -> None:
    data = show_run(runs_dir, "20260101-aaa").to_dict()
    text = json.dumps(data)
    assert json.loads(text)["rounds"][0]["round"] == 1
    assert data["run_dir"].endswith("20260101-aaa")
    assert data["started_at"] == "2026-01-01T10:00:00+00:00"
