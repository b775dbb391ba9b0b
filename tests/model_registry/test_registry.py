"""The model registry against a real MLflow SQLite store and real digits federations."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

import fedpilot
from fedpilot.audit.verify import verify_log
from fedpilot.errors import SpecError
from fedpilot.launch import load_run_spec, run_federation
from fedpilot.orchestrator.events import Callback, RoundSummary, Stop
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.rundir import RunDir
from fedpilot.tasks.builtin import DigitsMLP
from fedpilot.tracking._mlflow_utils import use_tracking_uri
from fedpilot.tracking.event_log import EventLogReader
from fedpilot.types import RoundContext


def _client(run: Any) -> MlflowClient:
    uri = run.spec.mlflow_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _events(run: Any) -> list[dict[str, Any]]:
    return list(EventLogReader(RunDir(run.run_dir).events))


def _aliases(run: Any, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in _client(run).get_registered_model(name).aliases.items()}


def test_a_completed_run_registers_a_challenger_with_its_lineage(
    federate: Callable[..., Any],
) -> None:
    run = federate("lineage")
    assert run.result.status == "completed"
    version = _client(run).get_model_version_by_alias("lineage", "challenger")
    assert str(version.version) == "1"
    tags = version.tags
    mlflow_run_id = RunDir(run.run_dir).mlflow_run_id.read_text().strip()
    assert version.run_id == mlflow_run_id
    assert tags["fedpilot.run_id"] == run.run_dir.name
    assert tags["fedpilot.mlflow_run_id"] == mlflow_run_id
    assert tags["fedpilot.spec_hash"] == run.spec.digest()
    assert tags["fedpilot.model_round"] == "3"
    assert tags["fedpilot.version"] == fedpilot.__version__
    assert float(tags["fedpilot.metric.central"]) == run.result.final_metrics["accuracy"]
    # Per-learner examples as the learners declared them in their updates; never data.
    declared = {
        e["learner"]: e["num_examples"]
        for e in _events(run)
        if e["event"] == EventType.UPDATE_ACCEPTED
    }
    assert json.loads(tags["fedpilot.data.learners"]) == declared
    assert sorted(declared) == ["0", "1", "2", "3"]
    assert len(tags["fedpilot.data.recipe"]) == len(tags["fedpilot.data.fingerprint"]) == 16
    # The worst learner's metric on its own held-out split, measured with the final model.
    task = DigitsMLP(hidden=16, data=run.spec.data, seed=run.spec.seed)
    task.set_weights(run.result.weights)
    per_learner = {str(i): task.evaluate(task.learner_data(i).test)["accuracy"] for i in range(4)}
    worst = min(per_learner, key=lambda k: per_learner[k])
    assert tags["fedpilot.worst_learner"] == worst
    assert float(tags["fedpilot.metric.worst_learner"]) == per_learner[worst]
    assert tags["fedpilot.gate.metric"] == "accuracy" and tags["fedpilot.gate.mode"] == "max"
    assert "fedpilot.registered_at" in tags
    # The event comes after the run's end, in the run's own log.
    names = [e["event"] for e in _events(run)]
    assert names[-2:] == [EventType.RUN_FINISHED, EventType.MODEL_REGISTERED]
    registered = _events(run)[-1]
    assert (registered["model"], registered["version"], registered["model_round"]) == (
        "lineage",
        "1",
        3,
    )


def test_promote_then_rollback_moves_the_champion_and_records_each_step(
    federate: Callable[..., Any], models: Callable[..., Any]
) -> None:
    first = federate("cycle", registry={"model_name": "cycle", "floor": 0.3})
    promoted = models("promote", "cycle", "--json")
    assert promoted.exit_code == 0, promoted.output
    body = json.loads(promoted.stdout)
    assert (body["passed"], body["champion"], body["checked"]) == (True, "1", ["floor"])
    assert _aliases(first, "cycle") == {"champion": "1"}

    second = federate("cycle", seed=8, registry={"model_name": "cycle", "tolerance": 1.0})
    assert _aliases(second, "cycle") == {"champion": "1", "challenger": "2"}
    assert models("promote", "cycle").exit_code == 0
    assert _aliases(second, "cycle") == {"champion": "2"}

    shown = json.loads(models("show", "cycle", "--json").stdout)
    assert shown["champion_history"] == ["1", "2"]
    assert [v["version"] for v in shown["versions"]] == ["2", "1"]
    assert shown["versions"][0]["aliases"] == ["champion"]
    assert shown["versions"][0]["tags"]["fedpilot.gate.decision"].endswith("passed (tolerance)")

    table = models("show", "cycle").stdout
    assert "champions so far: 1 → 2" in table and "passed" in table

    rolled = models("rollback", "cycle", "--json")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout) == {"name": "cycle", "from": "2", "champion": "1"}
    assert _aliases(first, "cycle") == {"champion": "1"}
    client = _client(first)
    assert (
        "champion back to version 1"
        in client.get_model_version("cycle", "2").tags["fedpilot.rolled_back"]
    )
    # Nothing earlier to go back to.
    again = models("rollback", "cycle")
    assert again.exit_code == 2
    assert "no previous champion" in again.stderr

    first_events = [e["event"] for e in _events(first)]
    assert first_events[-3:] == [
        EventType.MODEL_REGISTERED,
        EventType.GATE_DECIDED,
        EventType.MODEL_PROMOTED,
    ]
    second_events = [e for e in _events(second) if e["event"] != EventType.UPDATE_ACCEPTED]
    assert [e["event"] for e in second_events[-4:]] == [
        EventType.MODEL_REGISTERED,
        EventType.GATE_DECIDED,
        EventType.MODEL_PROMOTED,
        EventType.CHAMPION_ROLLED_BACK,
    ]
    assert (second_events[-1]["version"], second_events[-1]["to"]) == ("2", "1")
    # Each step is in the run's signed audit log too, which still verifies.
    lines = [json.loads(x) for x in (second.run_dir / "audit.jsonl").read_text().splitlines()]
    kinds = [x["kind"] for x in lines if x["kind"] != "signature"]
    assert kinds[-4:] == ["model_registered", "gate_decided", "model_promoted",
                          "champion_rolled_back"]  # fmt: skip
    verified = verify_log(second.run_dir)
    assert verified.bad_line is None and verified.signed_through == len(lines)

    listed = json.loads(models("list", "--json").stdout)
    assert {"name": "cycle", "versions": 2, "latest_version": "2",
            "aliases": {"champion": "1"}} in listed  # fmt: skip


def test_a_failing_gate_keeps_the_champion_and_names_the_rule_with_both_values(
    federate: Callable[..., Any], models: Callable[..., Any]
) -> None:
    good = federate("gated")
    assert models("promote", "gated").exit_code == 0
    champion_accuracy = good.result.final_metrics["accuracy"]
    # One round at a tiny learning rate: far worse than the champion.
    worse = federate(
        "gated",
        rounds=1,
        local={"epochs": 1, "lr": 0.001},
        registry={"model_name": "gated", "tolerance": 0.02, "floor": 0.99},
    )
    accuracy = worse.result.final_metrics["accuracy"]
    assert accuracy < champion_accuracy - 0.02

    refused = models("promote", "gated")
    assert refused.exit_code == 1
    assert "version 1 stays the champion" in refused.stderr
    assert f"tolerance: accuracy {accuracy:.6g} must be >= {champion_accuracy - 0.02:.6g}" in (
        refused.stderr
    )
    assert f"floor: accuracy {accuracy:.6g} must be >= 0.99" in refused.stderr
    assert _aliases(good, "gated") == {"champion": "1", "challenger": "2"}

    as_json = models("promote", "gated", "--json")
    assert as_json.exit_code == 1
    body = json.loads(as_json.stdout)
    assert (body["passed"], body["champion"], body["champion_before"]) == (False, "1", "1")
    failures = {f["rule"]: f for f in body["failures"]}
    assert set(failures) == {"tolerance", "floor"}
    assert failures["tolerance"]["value"] == pytest.approx(accuracy)
    assert failures["tolerance"]["threshold"] == pytest.approx(champion_accuracy - 0.02)

    decided = [e for e in _events(worse) if e["event"] == EventType.GATE_DECIDED]
    assert len(decided) == 2 and decided[-1]["passed"] is False
    assert {f["rule"] for f in decided[-1]["failures"]} == {"tolerance", "floor"}
    tag = _client(good).get_model_version("gated", "2").tags["fedpilot.gate.decision"]
    assert "failed: tolerance: accuracy" in tag
    assert not [e for e in _events(worse) if e["event"] == EventType.MODEL_PROMOTED]


def test_the_worst_learner_floor_is_a_gate_of_its_own(
    federate: Callable[..., Any], models: Callable[..., Any]
) -> None:
    run = federate("fair", registry={"model_name": "fair", "worst_learner_floor": 0.999})
    worst = float(_client(run).get_model_version("fair", "1").tags["fedpilot.metric.worst_learner"])
    refused = models("promote", "fair")
    assert refused.exit_code == 1
    assert "there is still no champion" in refused.stderr
    assert (
        f"worst_learner_floor: worst learner's accuracy {worst:.6g} must be >= 0.999"
        in refused.stderr
    )
    assert "champion" not in _aliases(run, "fair")


def test_a_rolled_back_candidate_is_never_the_registered_model(
    federate: Callable[..., Any],
) -> None:
    guard = {"name": "registry_guards:KeepFirstRound"}
    run = federate("stable", guard=guard)
    assert [r.status for r in run.result.history] == ["completed", "rolled_back", "rolled_back"]
    assert run.result.status == "completed"
    version = _client(run).get_model_version("stable", "1")
    assert version.tags["fedpilot.model_round"] == "1"
    round_one = run.result.history[0].metrics["accuracy"]
    assert float(version.tags["fedpilot.metric.central"]) == round_one
    # The same federation stopped after its first round made exactly the registered model.
    once = federate("stable-once", guard=guard, rounds=1)
    with use_tracking_uri(run.spec.mlflow_uri()):
        registered = mlflow.pytorch.load_model("models:/stable/1")
    state = [t.detach().numpy() for t in registered.state_dict().values()]
    for mine, reference in zip(state, once.result.weights, strict=True):
        np.testing.assert_array_equal(mine, reference)


def test_the_champion_loads_with_pyfunc_and_predicts_the_tasks_labels(
    federate: Callable[..., Any], models: Callable[..., Any]
) -> None:
    run = federate("served", rounds=4)
    assert models("promote", "served").exit_code == 0
    task = DigitsMLP(hidden=16, data=run.spec.data, seed=run.spec.seed)
    task.set_weights(run.result.weights)
    test = task.central_test_data()
    assert test is not None and len(test) > 100
    x = np.asarray(test.x, dtype=np.float32)
    with use_tracking_uri(run.spec.mlflow_uri()):
        model = mlflow.pyfunc.load_model("models:/served@champion")
        info = mlflow.models.get_model_info("models:/served@champion")
    scores = model.predict(x)
    assert scores.shape == (len(x), 10)
    import torch

    with torch.no_grad():
        expected = task.model(torch.from_numpy(x)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(np.argmax(scores, axis=1), expected)
    assert float(np.mean(expected == test.y)) == run.result.final_metrics["accuracy"]
    # The signature names dtype and shape; the input example is rows of the test set.
    (inputs,) = info.signature.inputs.inputs
    assert (str(inputs.type), inputs.shape) == ("float32", (-1, 64))
    (outputs,) = info.signature.outputs.inputs
    assert (str(outputs.type), outputs.shape) == ("float32", (-1, 10))
    assert info.saved_input_example_info["type"] == "ndarray"


def test_an_sklearn_task_is_registered_with_a_float64_signature_of_labels(
    federate: Callable[..., Any],
) -> None:
    run = federate("sgd", task={"name": "digits-sgd"}, local={"epochs": 1, "lr": 0.01})
    with use_tracking_uri(run.spec.mlflow_uri()):
        info = mlflow.models.get_model_info("models:/sgd@challenger")
        model = mlflow.pyfunc.load_model("models:/sgd@challenger")
    (inputs,) = info.signature.inputs.inputs
    assert (str(inputs.type), inputs.shape) == ("float64", (-1, 64))
    labels = model.predict(np.zeros((3, 64)))
    assert labels.shape == (3,)


def test_runs_that_do_not_complete_or_name_no_model_register_nothing(
    federate: Callable[..., Any],
) -> None:
    plain = federate("unused", registry={})
    assert plain.result.status == "completed"
    names = [m.name for m in _client(plain).search_registered_models()]
    assert "unused" not in names
    assert EventType.MODEL_REGISTERED not in [e["event"] for e in _events(plain)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "no-such-model"), "no registered model named 'no-such-model'"),
        (("promote", "no-such-model"), "no registered model named 'no-such-model'"),
        (("rollback", "no-such-model"), "no registered model named 'no-such-model'"),
        (("promote", "lineage-bad", "--version", "7"), "has no version 7"),
        (("promote", "lineage-bad", "--version", "x"), "got version='x'"),
    ],
)
def test_bad_names_and_versions_exit_2_with_a_message(
    federate: Callable[..., Any],
    models: Callable[..., Any],
    args: tuple[str, ...],
    message: str,
) -> None:
    if "lineage-bad" in args:
        federate("lineage-bad", rounds=1)
    result = models(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_no_store_exits_2(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from fedpilot.cli.models import models_app

    runner = CliRunner()
    result = runner.invoke(models_app, ["list", "-o", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no MLflow store at" in result.stderr
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    result = runner.invoke(models_app, ["show", "digits", "--tracking-uri", missing])
    assert result.exit_code == 2
    assert "no MLflow store at" in result.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_a_bad_model_name_in_the_spec_is_refused(federate: Any) -> None:
    with pytest.raises(SpecError, match=r"registry.model_name.*got model_name='a/b'"):
        federate("a/b")


class _StopAfterRound(Callback):
    def __init__(self, round_: int) -> None:
        self.round = round_

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> Stop | None:
        return Stop("paused by the test") if summary.round == self.round else None


def test_a_stopped_run_registers_only_once_its_resume_completes(
    spec_for: Callable[..., Any], runs_dir: Path
) -> None:
    spec = spec_for("resumed", name="resumetest")
    stopped = run_federation(spec, callbacks=[_StopAfterRound(1)])
    assert stopped.status == "stopped"
    (run_dir,) = [p for p in runs_dir.iterdir() if p.name.startswith("resumetest-")]
    client = MlflowClient(tracking_uri=spec.mlflow_uri(), registry_uri=spec.mlflow_uri())
    assert "resumed" not in [m.name for m in client.search_registered_models()]

    finished = run_federation(load_run_spec(run_dir), resume_dir=run_dir)
    assert finished.status == "completed"
    (version,) = client.search_model_versions("name = 'resumed'")
    assert version.tags["fedpilot.model_round"] == "3"
    assert version.tags["fedpilot.run_id"] == run_dir.name
    # Every learner's examples, from the log of both processes.
    assert sorted(json.loads(version.tags["fedpilot.data.learners"])) == ["0", "1", "2", "3"]
    events = [e["event"] for e in EventLogReader(RunDir(run_dir).events)]
    assert events.count(EventType.MODEL_REGISTERED) == 1


def test_a_version_written_with_leading_zeros_is_the_same_version(
    federate: Callable[..., Any], models: Callable[..., Any]
) -> None:
    run = federate("padded", rounds=1)
    promoted = models("promote", "padded", "--version", "01", "--json")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["version"] == "1"
    # The challenger it was is dropped, and the history names it as the registry does.
    assert _aliases(run, "padded") == {"champion": "1"}
    assert json.loads(models("show", "padded", "--json").stdout)["champion_history"] == ["1"]
    again = models("promote", "padded", "--version", "001")
    assert again.exit_code == 2 and "already the champion" in again.stderr


def test_a_rollback_passes_over_a_champion_version_since_deleted(
    federate: Callable[..., Any], models: Callable[..., Any]
) -> None:
    loose = {"model_name": "pruned", "tolerance": 1.0}
    runs = []
    for seed in (7, 8, 9):
        runs.append(federate("pruned", seed=seed, rounds=1, registry=loose))
        assert models("promote", "pruned").exit_code == 0
    _client(runs[0]).delete_model_version("pruned", "2")

    rolled = models("rollback", "pruned", "--json")

    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout) == {"name": "pruned", "from": "3", "champion": "1"}
    assert _aliases(runs[0], "pruned") == {"champion": "1"}
    assert json.loads(models("show", "pruned", "--json").stdout)["champion_history"] == ["1"]
