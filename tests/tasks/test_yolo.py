"""The yolo task: Ultralytics YOLO trained across learners on the generated driving set.

Runs where Ultralytics is installed (.venv-detect: `make .venv-detect`, run by
`make test`); skipped elsewhere. Federations run as `fedpilot run` subprocesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from aggregation._cases import AGGREGATORS, fold
from clitools import fedpilot
from fedpilot.aggregation import RuleAggregator
from fedpilot.data.driving import make_driving
from fedpilot.errors import TaskError
from fedpilot.tasks import TrainSettings, YoloTask

pytest.importorskip("ultralytics")
pytestmark = pytest.mark.detection

APPS = Path(__file__).parent.parent / "_apps"


@pytest.fixture(scope="module")
def driving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 learners × 10 images of 96 px, and 6 validation images."""
    out = tmp_path_factory.mktemp("driving") / "set"
    make_driving(out, learners=2, images_per_learner=10, val_images=6, size=96, seed=0)
    return out


def _spec(tmp_path: Path, root: Path, **changes: Any) -> Path:
    spec: dict[str, Any] = {
        "name": "yolo-test",
        "seed": 0,
        "task": {"name": "yolo", "params": {"root": str(root), "imgsz": 96, "oversample": True}},
        "data": {"num_learners": 2},
        "rounds": 2,
        "sampling": {"fraction": 1.0, "min_learners": 2},
        "local": {"epochs": 1, "batch_size": 5, "lr": 0.01, "momentum": 0.9},
        "evaluation": {"central_every": 1},
        "guard": {"metric": "map50_95", "mode": "max", "max_relative_drop": 0.10},
        "runtime": {"mode": "local", "workers": 0, "round_timeout": 600},
        "output_dir": str(tmp_path / "runs"),
    }
    for key, value in changes.items():
        spec[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run_dir(tmp_path: Path) -> Path:
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if (p / "events.jsonl").exists()]
    return run_dir


def _events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def _metric_steps(run_dir: Path, name: str) -> dict[int, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    return {m.step: m.value for m in client.get_metric_history(run_id, name)}


def test_federates_two_learners_two_rounds_and_logs_map_each_round(
    tmp_path: Path, driving: Path
) -> None:
    done = fedpilot("run", str(_spec(tmp_path, driving)), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    rounds = _events(run_dir, "RoundCompleted")
    assert [r["round"] for r in rounds] == [1, 2]
    for record in rounds:
        assert sorted(record["accepted"]) == ["0", "1"]
        metrics = record["candidate_metrics"]
        for name in ("map50", "map50_95", "precision", "recall"):
            assert 0.0 <= metrics[name] <= 1.0
        assert metrics["map50_95"] <= metrics["map50"]
    for name in ("global.map50", "global.map50_95"):
        assert sorted(_metric_steps(run_dir, name)) == [1, 2]
    # Learners report their distinct images, not the oversampled repeats.
    updates = _events(run_dir, "UpdateAccepted")
    assert {u["num_examples"] for u in updates} == {10}


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A detector trained on learner 0's 40 images until it finds some boxes there
    (mAP@0.5:0.95 > 0 on them), saved as an Ultralytics checkpoint; and the data."""
    out = tmp_path_factory.mktemp("pretrain") / "set"
    make_driving(out, learners=2, images_per_learner=40, val_images=4, size=96, seed=1)
    task = YoloTask(root=str(out), val=str(out / "learner-0"), imgsz=96, seed=0)
    data = task.learner_data(0).train
    task.train(data, TrainSettings(epochs=30, batch_size=8, lr=0.01, momentum=0.9, seed=0))
    assert task.evaluate(data)["map50_95"] > 0.01
    checkpoint = out.parent / "detector.pt"
    task.save_checkpoint(checkpoint)
    return checkpoint, out


def test_guard_rolls_back_a_round_that_lost_map50_95(
    tmp_path: Path, detector: tuple[Path, Path]
) -> None:
    checkpoint, root = detector
    params = {
        "root": str(root),
        "val": str(root / "learner-0"),  # where the detector finds boxes
        "weights": str(checkpoint),
        "imgsz": 96,
    }
    spec = _spec(
        tmp_path,
        root,
        task={"name": "yolo", "params": params},
        local={"epochs": 1, "batch_size": 8, "lr": 0.0005, "momentum": 0.9},
        transforms=[{"name": "spoiled_round:SpoiledRound", "params": {"round": 2}}],
        base_dir=str(APPS),
    )
    done = fedpilot("run", str(spec), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = _run_dir(tmp_path)
    first, second = _events(run_dir, "RoundCompleted")
    assert first["status"] == "completed"
    assert first["global_metrics"]["map50_95"] > 0.01
    assert second["status"] == "rolled_back"
    assert second["candidate_metrics"]["map50_95"] < 0.9 * first["global_metrics"]["map50_95"]
    assert second["global_metrics"] == first["global_metrics"]  # the round-1 model stays
    (rollback,) = _events(run_dir, "ModelRolledBack")
    assert rollback["round"] == 2 and "map50_95" in json.dumps(rollback)


def test_weights_keep_integer_batchnorm_counters_through_every_aggregator(
    driving: Path,
) -> None:
    task = YoloTask(root=str(driving), imgsz=96, seed=0)
    reference = task.get_weights()
    counters = [i for i, a in enumerate(reference) if a.dtype == np.int64]
    assert counters, "BatchNorm's num_batches_tracked travels as int64"
    rng = np.random.default_rng(0)
    cohort = []
    for k in range(5):
        weights = [
            (a + rng.normal(0, 0.01, a.shape)).astype(a.dtype)
            if a.dtype.kind == "f"
            else a + 3 * (k + 1)
            for a in reference
        ]
        cohort.append((f"learner-{k}", weights, 10 + k))
    for name, make in AGGREGATORS.items():
        aggregator = make()
        if isinstance(aggregator, RuleAggregator):  # at its own chunk size, not the tests' 7
            aggregator = RuleAggregator(aggregator.rule, clip=aggregator.clip)
        result = fold(aggregator, reference, cohort)
        for i in counters:
            values = [w[i] for _, w, _ in cohort]
            assert result[i].dtype == np.int64, name
            assert np.min(values) <= result[i] <= np.max(values), name
        task.set_weights(result)  # the model takes the aggregate back
        assert all(np.array_equal(a, b) for a, b in zip(task.get_weights(), result, strict=True)), (
            name
        )


def test_a_malformed_label_stops_the_run_naming_file_and_line(
    tmp_path: Path, driving: Path
) -> None:
    root = tmp_path / "set"
    make_driving(root, learners=2, images_per_learner=3, val_images=2, size=96, seed=0)
    label = root / "learner-1" / "labels" / "img-00001.txt"
    lines = label.read_text().splitlines() or ["0 0.5 0.5 0.1 0.1"]
    label.write_text("\n".join([*lines[:1], "2 0.5 0.5 1.7", *lines[1:]]) + "\n")
    done = fedpilot("run", str(_spec(tmp_path, root)), cwd=tmp_path, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"{label}:2: has 4 fields, expected 5" in done.stderr
    assert "Traceback" not in done.stderr


def test_lrf_is_where_a_rounds_learning_rate_schedule_ends(driving: Path) -> None:
    """Ultralytics decays the learning rate linearly to lr0·lrf over each call's epochs:
    epoch e of E trains at lr0·(1 − e/E·(1 − lrf)), so lrf = 1 keeps it constant."""
    settings = TrainSettings(epochs=2, batch_size=5, lr=0.01, momentum=0.9, seed=0)
    for lrf, last in ((1.0, 0.01), (0.01, 0.01 * (1 - 0.5 * 0.99))):
        task = YoloTask(root=str(driving), imgsz=96, lrf=lrf)
        metrics = task.train(task.learner_data(0).train, settings)
        assert metrics["lr_last"] == pytest.approx(last), lrf
        assert np.isfinite(metrics["loss"])


def test_bad_params_and_other_classes_are_refused(driving: Path) -> None:
    with pytest.raises(ValueError, match="imgsz"):
        YoloTask(root=str(driving), imgsz=100)
    with pytest.raises(ValueError, match="mosaic"):
        YoloTask(root=str(driving), mosaic=2.0)
    with pytest.raises(ValueError, match=r"oversample\.copies"):
        YoloTask(root=str(driving), oversample={"copies": 0})
    task = YoloTask(root=str(driving), classes=["car", "truck"], imgsz=96)
    with pytest.raises(TaskError, match="classes"):
        task.evaluate(task.learner_data(0).train)
    with pytest.raises(TaskError, match="not an Ultralytics detection model"):
        _ = YoloTask(root=str(driving), model="no-such-model.yaml").model


def test_learners_tune_the_yolo_hyperparameters_on_their_own_images(
    tmp_path: Path, driving: Path
) -> None:
    space = {
        "task.params.mosaic": {"low": 0.0, "high": 1.0},
        "task.params.hsv_h": {"low": 0.0, "high": 0.1},
        "local.lr": {"low": 0.001, "high": 0.02, "log": True},
    }
    task = {
        "name": "yolo",
        "params": {"root": str(driving), "imgsz": 96, "mosaic": 1.0, "hsv_h": 0.015},
    }
    tune = {"learner": {"trials": 2, "metric": "map50_95", "space": space}}
    spec = _spec(tmp_path, driving, task=task, tune=tune, rounds=1)
    done = fedpilot("run", str(spec), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    updates = _events(_run_dir(tmp_path), "UpdateAccepted")
    assert len(updates) == 2
    for update in updates:
        chosen = update["metrics"]
        assert chosen["tune.trials"] == 2.0
        assert 0.0 <= chosen["tune.task.params.mosaic"] <= 1.0
        assert 0.0 <= chosen["tune.task.params.hsv_h"] <= 0.1


def test_yolov9t_builds_from_its_yaml_too(driving: Path) -> None:
    task = YoloTask(root=str(driving), model="yolov9t.yaml", imgsz=96, seed=0)
    weights = task.get_weights()
    assert any(a.dtype == np.int64 for a in weights)
    metrics = task.evaluate(task.central_test_data())
    assert set(metrics) == {"precision", "recall", "map50", "map50_95", "loss"}
    again = YoloTask(root=str(driving), model="yolov9t.yaml", imgsz=96, seed=0).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, again, strict=True))  # seeded
