"""MLflowCallback against a real MLflow SQLite store (no mocks)."""

from __future__ import annotations

import csv
import io
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run
from sklearn.linear_model import LogisticRegression

import fedpilot
from fedpilot.orchestrator.events import RoundSummary, RunInfo
from fedpilot.rundir import RunDir
from fedpilot.tasks._base import ModelArtifact, Task
from fedpilot.tracking import MLflowCallback
from fedpilot.tracking._mlflow_utils import use_tracking_uri
from fedpilot.types import Metrics, Weights


@dataclass
class Logged:
    """A whole federation logged once and shared by the tests that read it back."""

    client: MlflowClient
    info: RunInfo
    run: Run
    summaries: list[RoundSummary]


def _drive(
    build: Any, info: RunInfo, summaries: list[RoundSummary], **result_kw: object
) -> MLflowCallback:
    callback = MLflowCallback()
    callback.on_run_start(run=info)
    for summary in summaries:
        callback.on_round_end(ctx=build.ctx(summary.round), summary=summary)
    callback.on_run_end(run=info, result=build.result(summaries, **result_kw))  # type: ignore[arg-type]
    return callback


def _read_id(info: RunInfo) -> str:
    return RunDir(info.run_dir).mlflow_run_id.read_text().strip()


@pytest.fixture(scope="module")
def logged(build: Any, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    spec = build.spec(tmp_path_factory.mktemp("runs"))
    info = build.run(spec, task=build.TinyTorchTask(seed=1))
    summaries = [build.summary(1), build.summary(2, "rolled_back"), build.summary(3)]
    _drive(build, info, summaries)
    client = MlflowClient(tracking_uri=build.mlflow_uri)
    return Logged(client, info, client.get_run(_read_id(info)), summaries)


def test_one_finished_run_named_after_the_fedpilot_run(logged: Logged) -> None:
    run = logged.run
    assert run.info.run_name == "run-1"
    assert run.info.status == "FINISHED"
    experiment = logged.client.get_experiment(run.info.experiment_id)
    assert experiment.name == "tracking-demo"
    # Artifacts of a SQLite store live next to it, not in the working directory.
    assert "/store/mlartifacts/" in experiment.artifact_location


def test_resolved_spec_is_logged_as_flat_params(logged: Logged) -> None:
    params = logged.run.data.params
    assert params["name"] == "tracking-demo"
    assert params["rounds"] == "3"
    assert params["local.lr"] == "0.05"
    assert params["data.partition.kind"] == "iid"
    assert params["task.params.hidden"] == "[4, 2]"
    assert params["task.params.odd_key"] == "1"  # '/' is not allowed in MLflow keys
    assert params["guard.enabled"] == "true"


def test_tags_identify_spec_version_mode_and_commit(logged: Logged) -> None:
    tags = logged.run.data.tags
    assert tags["fedpilot.spec_hash"] == logged.info.spec.digest()
    assert tags["fedpilot.version"] == fedpilot.__version__
    assert tags["fedpilot.mode"] == "federated"
    assert tags["fedpilot.run_dir"] == str(logged.info.run_dir.resolve())
    assert tags["fedpilot.status"] == "completed"
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # tests run inside the fedpilot checkout
        commit = tags["mlflow.source.git.commit"]
        # Not compared with HEAD itself: someone may commit while the tests run.
        kind = subprocess.run(["git", "cat-file", "-t", commit], capture_output=True, text=True)
        assert kind.stdout.strip() == "commit"


def test_round_metrics_are_logged_with_the_round_as_step(logged: Logged) -> None:
    def values(key: str) -> list[float]:
        points = logged.client.get_metric_history(logged.run.info.run_id, key)
        assert sorted(m.step for m in points) == [1, 2, 3], key
        return [m.value for m in sorted(points, key=lambda m: m.step)]

    assert values("global.accuracy") == pytest.approx([0.6, 0.7, 0.8])
    assert values("global.loss") == pytest.approx([2.0, 1.0, 2 / 3])
    assert values("candidate.accuracy") == pytest.approx([0.6, 0.5, 0.8])
    assert values("rolled_back") == [0.0, 1.0, 0.0]
    assert values("train_loss") == pytest.approx([1.0, 0.5, 1 / 3])
    assert values("participants") == [4.0, 4.0, 4.0]
    assert values("accepted") == [2.0, 2.0, 2.0]
    assert values("rejected_updates") == [1.0, 1.0, 1.0]
    assert values("failed_updates") == [1.0, 1.0, 1.0]
    assert values("bytes_sent") == [1000.0, 2000.0, 3000.0]
    assert values("bytes_received") == [900.0, 1800.0, 2700.0]
    assert values("round_duration_s") == [1.5, 1.5, 1.5]
    assert values("learner.l1.loss") == pytest.approx([0.1, 0.1, 0.1])
    assert values("learner.l0.accuracy") == [0.5, 0.5, 0.5]


def test_final_metrics_and_rollbacks(logged: Logged) -> None:
    metrics = logged.run.data.metrics
    assert metrics["final.accuracy"] == pytest.approx(0.8)
    assert metrics["final.loss"] == pytest.approx(2 / 3)
    assert metrics["rollbacks"] == 1.0


def test_spec_and_history_artifacts(logged: Logged, tmp_path: Path) -> None:
    run_id = logged.run.info.run_id
    names = {a.path for a in logged.client.list_artifacts(run_id)}
    assert {"spec.yaml", "history.csv"} <= names
    spec_file = logged.client.download_artifacts(run_id, "spec.yaml", str(tmp_path))
    assert yaml.safe_load(Path(spec_file).read_text()) == logged.info.spec.resolved()
    csv_file = logged.client.download_artifacts(run_id, "history.csv", str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(Path(csv_file).read_text())))
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert [r["status"] for r in rows] == ["completed", "rolled_back", "completed"]
    assert float(rows[2]["accuracy"]) == pytest.approx(0.8)
    assert rows[0]["rejected"] == "1"


def test_final_model_loads_back_with_the_final_weights(logged: Logged, build: Any) -> None:
    run_id = logged.run.info.run_id
    # MLflow 3.17 resolves `runs:/` model URIs with the global tracking URI.
    with use_tracking_uri(build.mlflow_uri):
        model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    loaded = [t.detach().numpy() for t in model.state_dict().values()]
    for got, want in zip(loaded, build.final_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    # It is an MLflow 3 LoggedModel of this run, linked to the last round's metrics.
    models = logged.client.search_logged_models(
        experiment_ids=[logged.run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    assert [m.name for m in models] == ["model"]
    assert models[0].status.to_proto() == models[0].status.READY.to_proto()
    assert models[0].tags["fedpilot.run_id"] == "run-1"
    assert {m.key for m in models[0].metrics or []} >= {"global.accuracy", "final.accuracy"}


def test_resume_reopens_the_same_run_and_raw_weights_without_a_task(
    build: Any, tmp_path: Path
) -> None:
    spec = build.spec(tmp_path, name="resume-demo", rounds=4)
    first = build.run(spec)
    cut_short = [build.summary(1, learners=1), build.summary(2, learners=1)]
    _drive(build, first, cut_short, status="interrupted")
    run_id = _read_id(first)
    client = MlflowClient(tracking_uri=build.mlflow_uri)
    assert client.get_run(run_id).info.status == "KILLED"

    resumed = build.run(spec, start_round=3)
    callback = MLflowCallback()
    callback.on_run_start(run=resumed)
    assert callback.mlflow_run_id == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    rest = [build.summary(3, learners=1), build.summary(4, learners=1)]
    for summary in rest:
        callback.on_round_end(ctx=build.ctx(summary.round, total=4), summary=summary)
    callback.on_run_end(run=resumed, result=build.result([*cut_short, *rest]))

    assert _read_id(resumed) == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fedpilot.start_round"] == "3"
    steps = [m.step for m in client.get_metric_history(run_id, "global.accuracy")]
    assert sorted(steps) == [1, 2, 3, 4]
    assert len(client.search_runs([run.info.experiment_id])) == 1
    # No Task: the weights are logged as an .npz under model/.
    path = client.download_artifacts(run_id, "model/weights.npz", str(tmp_path / "dl"))
    with np.load(path) as npz:
        for i, want in enumerate(build.final_weights()):
            np.testing.assert_array_equal(npz[f"arr_{i}"], want)


def test_failed_run_and_broken_model_fall_back_to_weights(
    build: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = build.spec(tmp_path, name="broken-model")
    info = build.run(spec, task=build.BrokenArtifactTask())
    with caplog.at_level(logging.WARNING, logger="fedpilot.tracking"):
        _drive(build, info, [build.summary(1)], status="failed", error="round 2 failed")
    client = MlflowClient(tracking_uri=build.mlflow_uri)
    run = client.get_run(_read_id(info))
    assert run.info.status == "FAILED"
    assert run.data.tags["fedpilot.error"] == "round 2 failed"
    assert "model/weights.npz" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "no model for you" in caplog.text


def test_more_metrics_than_one_batch_holds(build: Any, tmp_path: Path) -> None:
    spec = build.spec(tmp_path, name="many-learners")
    info = build.run(spec)
    _drive(build, info, [build.summary(1, learners=600)])  # 1200 learner metrics
    client = MlflowClient(tracking_uri=build.mlflow_uri)
    metrics = client.get_run(_read_id(info)).data.metrics
    assert sum(k.startswith("learner.") for k in metrics) == 1200
    assert metrics["learner.l599.loss"] == pytest.approx(59.9)
    assert metrics["global.accuracy"] == pytest.approx(0.6)


def test_tracking_disabled_creates_nothing(build: Any, tmp_path: Path) -> None:
    spec = build.spec(tmp_path, name="untracked", tracking={"enabled": False})
    info = build.run(spec)
    callback = _drive(build, info, [build.summary(1)])
    assert callback.mlflow_run_id is None
    assert not RunDir(info.run_dir).mlflow_run_id.exists()


def test_unreachable_store_warns_and_never_raises(
    build: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = build.spec(tmp_path, name="nowhere", tracking={"mlflow_uri": "bogus-scheme://x"})
    info = build.run(spec, task=build.TinyTorchTask())
    with caplog.at_level(logging.WARNING, logger="fedpilot.tracking"):
        callback = _drive(build, info, [build.summary(1)])
    assert callback.mlflow_run_id is None
    assert "MLflow tracking failed in on_run_start" in caplog.text


class _LogisticTask(Task):
    """A scikit-learn Task: the model goes out through MLflow's sklearn flavor (skops)."""

    def __init__(self) -> None:
        super().__init__()
        x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
        self.model = LogisticRegression().fit(x, [0, 1, 1, 0])

    def get_weights(self) -> Weights:
        return [self.model.coef_.copy(), self.model.intercept_.copy()]

    def set_weights(self, weights: Weights) -> None:
        self.model.coef_, self.model.intercept_ = (np.array(w) for w in weights)

    def train(self, data: Any, settings: Any) -> Metrics:
        return {"loss": 0.0}

    def evaluate(self, data: Any) -> Metrics:
        return {"loss": 0.0}

    def model_artifact(self) -> ModelArtifact:
        return ModelArtifact(flavor="sklearn", model=self.model)


def test_sklearn_model_is_logged_with_the_sklearn_flavor(build: Any, tmp_path: Path) -> None:
    import mlflow.sklearn

    spec = build.spec(tmp_path, name="sklearn-demo")
    info = build.run(spec, task=_LogisticTask())
    weights = [np.array([[2.0, -1.0]]), np.array([0.25])]
    _drive(build, info, [build.summary(1)], weights=weights)
    with use_tracking_uri(build.mlflow_uri):
        model = mlflow.sklearn.load_model(f"runs:/{_read_id(info)}/model")
    np.testing.assert_array_equal(model.coef_, weights[0])
    np.testing.assert_array_equal(model.intercept_, weights[1])


def _softmax_weights() -> Weights:
    rng = np.random.default_rng(4)
    return [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]


@pytest.mark.parametrize("hooked", [False, True], ids=["pyfunc-flavor", "log_model-hook"])
def test_a_pyfunc_model_is_logged_by_flavor_or_by_the_tasks_own_hook(
    build: Any, tmp_path: Path, hooked: bool
) -> None:
    import mlflow.pyfunc

    from _apps.folder_task import FolderTask, HookLoggedTask

    task = HookLoggedTask() if hooked else FolderTask()
    spec = build.spec(tmp_path, name=f"pyfunc-{hooked}")
    info = build.run(spec, task=task)
    weights = _softmax_weights()
    _drive(build, info, [build.summary(1)], weights=weights)
    run_id = _read_id(info)
    x = np.random.default_rng(5).normal(size=(20, 4)).astype(np.float32)
    with use_tracking_uri(build.mlflow_uri):
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    np.testing.assert_array_equal(model.predict(x), np.argmax(x @ weights[0] + weights[1], axis=1))
    assert "python_function" in model.metadata.flavors
    assert (model.metadata.metadata or {}).get("logged_by") == (
        "HookLoggedTask.log_model" if hooked else None
    )
    client = MlflowClient(tracking_uri=build.mlflow_uri)
    models = client.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    assert [m.name for m in models] == ["model"]
    assert models[0].status.to_proto() == models[0].status.READY.to_proto()


def test_an_unknown_flavor_is_named_and_the_weights_are_logged_instead(
    build: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from _apps.folder_task import UnknownFlavorTask

    spec = build.spec(tmp_path, name="unknown-flavor")
    info = build.run(spec, task=UnknownFlavorTask())
    with caplog.at_level(logging.WARNING, logger="fedpilot.tracking"):
        _drive(build, info, [build.summary(1)], weights=_softmax_weights())
    assert "unknown MLflow flavor 'no_such_flavor' (ModelArtifact.flavor)" in caplog.text
    client = MlflowClient(tracking_uri=build.mlflow_uri)
    artifacts = {a.path for a in client.list_artifacts(_read_id(info), "model")}
    assert "model/weights.npz" in artifacts


def test_stopped_run_is_killed_with_its_reason_and_warnings_are_tags(
    build: Any, tmp_path: Path
) -> None:
    spec = build.spec(tmp_path, name="stopped-demo", rounds=4)
    info = build.run(spec)
    callback = MLflowCallback()
    callback.on_run_start(run=info)
    callback.on_warning(round=0, code="guard.metric", message="no accuracy: using loss")
    summaries = [build.summary(1, learners=1)]
    callback.on_round_end(ctx=build.ctx(1, total=4), summary=summaries[0])
    callback.on_warning(round=1, code="guard.metric", message="still no accuracy")
    result = build.result(summaries, "stopped", error="budget spent")
    callback.on_run_end(run=info, result=result)
    run = MlflowClient(tracking_uri=build.mlflow_uri).get_run(_read_id(info))
    assert run.info.status == "KILLED"
    assert run.data.tags["fedpilot.status"] == "stopped"
    assert run.data.tags["fedpilot.reason"] == "budget spent"
    assert "fedpilot.error" not in run.data.tags
    assert run.data.tags["fedpilot.warning.guard.metric"] == "round 1: still no accuracy"


def test_a_resumed_run_logs_the_checkpoints_rounds_it_lacks_and_no_round_twice(
    build: Any, tmp_path: Path
) -> None:
    spec = build.spec(tmp_path, name="reconciled", rounds=4, tracking={
        "mlflow_uri": build.mlflow_uri, "log_model": False})  # fmt: skip
    first = MLflowCallback()
    info = build.run(spec)
    first.on_run_start(run=info)
    first.on_round_end(ctx=build.ctx(1), summary=build.summary(1))
    # Killed after round 2's checkpoint and round 3's log, before round 2's log; the
    # resume starts from round 2's checkpoint (round 3's was lost).
    first.on_round_end(ctx=build.ctx(3), summary=build.summary(3))
    done = build.result([build.summary(1), build.summary(2)]).history
    resumed = MLflowCallback()
    again = RunInfo(info.run_id, info.run_dir, spec, start_round=3, history=done)
    resumed.on_run_start(run=again)
    for round_ in (3, 4):
        resumed.on_round_end(ctx=build.ctx(round_), summary=build.summary(round_))
    summaries = [build.summary(r) for r in (1, 2, 3, 4)]
    resumed.on_run_end(run=again, result=build.result(summaries))

    client = MlflowClient(tracking_uri=build.mlflow_uri)
    run_id = _read_id(info)
    steps = [m.step for m in client.get_metric_history(run_id, "participants")]
    assert sorted(steps) == [1, 2, 3, 4]  # round 2 from its record; 3 once
    accuracy = {m.step: m.value for m in client.get_metric_history(run_id, "global.accuracy")}
    assert accuracy[2] == build.summary(2).global_metrics["accuracy"]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert resumed.failure is None


def test_a_tracking_failure_is_the_callbacks_failure(build: Any, tmp_path: Path) -> None:
    spec = build.spec(tmp_path, tracking={"mlflow_uri": "sqlite:////proc/nope/mlflow.db"})
    callback = MLflowCallback()
    callback.on_run_start(run=build.run(spec))
    assert callback.failure is not None
    assert "on_run_start" in callback.failure and "/proc/nope" in callback.failure


def test_a_task_giving_no_input_example_is_logged_without_a_signature(logged: Logged) -> None:
    # TinyTorchTask's model_artifact names no example: the model logs, unsigned.
    with use_tracking_uri(logged.client.tracking_uri):
        info = mlflow.models.get_model_info(f"runs:/{logged.run.info.run_id}/model")
    assert info.signature is None
    assert info.saved_input_example_info is None
