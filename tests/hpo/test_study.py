"""`fedpilot tune`'s studies: trials are federations, pruned through the federation's own
stop, kept in an RDB storage that a resumed study and other processes share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from clitools import fedpilot
from federations import digits_spec
from fedpilot.hpo.study import best_spec_path, default_storage, tune
from fedpilot.hpo.trial import PARENT_TAG
from fedpilot.spec import FederationSpec, load_spec
from fedpilot.tracking.store import list_runs

GOOD_LR = 0.05
BAD_LR = 5.0  # 100x: the model never learns


def _spec(tmp_path: Path, tune_: dict[str, Any], **changes: Any) -> FederationSpec:
    base = digits_spec(tmp_path, "study", evaluation={"central_every": 1}, **changes)
    raw = base.model_dump(mode="json")
    raw["tune"] = tune_
    spec = FederationSpec.model_validate(raw)
    return spec


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def test_a_trial_in_a_bad_region_is_pruned_after_fewer_rounds(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {
            "space": {"local.lr": {"choices": [GOOD_LR, BAD_LR]}},
            "pruner": {"name": "median", "startup_trials": 2, "warmup_rounds": 1},
        },
        tracking={"enabled": True},
        registry={"model_name": "tuned"},
    )
    # The first two trials are good, the third is in the bad region: the median of the
    # first two is what it is pruned against.
    storage = default_storage(spec)
    spec.output_dir.mkdir(parents=True)
    made = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for lr in (GOOD_LR, GOOD_LR, BAD_LR):
        made.enqueue_trial({"local.lr": lr})

    result = tune(spec, trials=3, study_name="s")

    trials = sorted(_finished(result.study), key=lambda t: t.number)
    assert [t.params["local.lr"] for t in trials] == [GOOD_LR, GOOD_LR, BAD_LR]
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    bad = trials[2]
    assert bad.user_attrs["rounds_run"] < spec.rounds == trials[0].user_attrs["rounds_run"]
    assert bad.user_attrs["pruned_at"] == bad.user_attrs["rounds_run"]
    # The pruned trial's federation was stopped (resumable), not failed.
    runs = {r.run_id: r for r in list_runs(spec.output_dir)}
    assert runs[bad.user_attrs["run_id"]].status == "stopped"
    assert runs[trials[0].user_attrs["run_id"]].status == "completed"

    # Each trial is a child MLflow run of the study's run, with its params and rounds.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=spec.mlflow_uri())
    parent = result.study.user_attrs["mlflow_parent_run_id"]
    for trial in trials:
        (child,) = client.search_runs(
            [client.get_run(parent).info.experiment_id],
            filter_string=f"tags.`fedpilot.run_id` = '{trial.user_attrs['run_id']}'",
        )
        assert child.data.tags[PARENT_TAG] == parent
        assert float(child.data.params["local.lr"]) == trial.params["local.lr"]
        steps = client.get_metric_history(child.info.run_id, "global.accuracy")
        assert [m.step for m in steps] == list(range(1, trial.user_attrs["rounds_run"] + 1))

    # Trials register no model; the best spec, run as-is, will (it keeps the registry).
    assert client.search_registered_models() == []

    # The best trial's spec, written beside the runs, is the spec with its values.
    assert result.best_spec == best_spec_path(spec, "s")
    best = load_spec(result.best_spec)
    assert best.local.lr == GOOD_LR
    assert best.tune is None  # the study's space stays with the study
    assert best.registry.model_name == "tuned"
    unchanged = {"local", "base_dir", "tune"}
    assert best.model_dump(exclude=unchanged) == spec.model_dump(exclude=unchanged)


def test_a_resumed_study_continues_with_the_next_trial_and_samples_as_one_run(
    tmp_path: Path,
) -> None:
    space = {"space": {"local.lr": {"low": 0.01, "high": 0.5, "log": True}}}
    spec = _spec(tmp_path, {**space, "pruner": {"name": "none"}})
    first = tune(spec, trials=2, study_name="s")
    assert first.trials_run == [0, 1]
    again = tune(spec, trials=3, study_name="s")
    assert again.trials_run == [2]
    resumed = sorted(_finished(again.study), key=lambda t: t.number)
    assert [t.number for t in resumed] == [0, 1, 2]
    assert tune(spec, trials=3, study_name="s").trials_run == []  # it has its 3

    # The sampler is seeded by the trial's number: the resumed study drew what one
    # uninterrupted study draws.
    whole = tune(spec, trials=3, study_name="whole")
    drawn = sorted(_finished(whole.study), key=lambda t: t.number)
    assert [t.params for t in drawn] == [t.params for t in resumed]


@pytest.mark.slow
def test_two_processes_fill_one_study_without_duplicates(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {"space": {"local.lr": {"low": 0.01, "high": 0.5, "log": True}}},
        rounds=3,
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["tune", str(path), "--trials", "6", "--study", "shared", "--storage", storage]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fedpilot", *args, "--json"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    ran = [json.loads(out)["trials_run_here"] for out, _ in outputs]
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = _finished(study)
    assert len(finished) == 6
    assert sorted(ran[0] + ran[1]) == sorted(t.number for t in finished)
    assert not set(ran[0]) & set(ran[1])
    assert len({t.params["local.lr"] for t in finished}) == 6

    # The best spec runs as it is.
    best = json.loads(outputs[0][0])["best_spec"]
    done = fedpilot("run", best, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"


def test_optuna_dashboard_reads_the_study(tmp_path: Path) -> None:
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    spec = _spec(tmp_path, {"space": {"local.lr": {"low": 0.01, "high": 0.5}}}, rounds=1)
    tune(spec, trials=1, study_name="seen")
    app = wsgi(default_storage(spec))
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = "/api/studies"
    answered: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answered.append(status)))
    assert answered == ["200 OK"]
    (summary,) = json.loads(body)["study_summaries"]
    assert summary["study_name"] == "seen" and summary["directions"] == ["maximize"]


def test_a_multi_objective_study_keeps_its_pareto_front(tmp_path: Path) -> None:
    objectives = [
        {"metric": "accuracy", "direction": "maximize"},
        {"metric": "bytes", "direction": "minimize"},
    ]
    space = {"local.lr": {"low": 0.01, "high": 0.5}, "sampling.fraction": {"choices": [0.5, 1.0]}}
    spec = _spec(tmp_path, {"space": space, "objectives": objectives}, rounds=2)
    result = tune(spec, trials=3, study_name="front")
    trials = _finished(result.study)
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(len(t.values) == 2 and t.values[1] > 0 for t in trials)
    assert result.best_spec is not None and result.best_spec.is_file()


def test_values_that_break_a_check_across_fields_fail_that_trial_only(tmp_path: Path) -> None:
    # Each edge is valid alone; together 1 learner sampled of 6 is fewer than min 3.
    space = {
        "sampling.fraction": {"choices": [0.2, 1.0]},
        "sampling.min_learners": {"choices": [1, 3]},
    }
    spec = _spec(tmp_path, {"space": space}, rounds=1)
    spec.output_dir.mkdir(parents=True)
    made = optuna.create_study(study_name="s", storage=default_storage(spec), direction="maximize")
    made.enqueue_trial({"sampling.fraction": 0.2, "sampling.min_learners": 3})
    made.enqueue_trial({"sampling.fraction": 1.0, "sampling.min_learners": 3})

    result = tune(spec, trials=1, study_name="s")

    failed, complete = sorted(result.study.trials, key=lambda t: t.number)
    assert failed.state.name == "FAIL" and "sampling.min_learners" in failed.user_attrs["error"]
    assert complete.state.name == "COMPLETE"


REFUSING_GUARD = """
from fedpilot.guard import Guard
from fedpilot.guard._base import Verdict


class Never(Guard):
    def judge(self, *, candidate, stable):
        return Verdict(False, "this guard accepts nothing")
"""


def test_a_trial_whose_federation_failed_fails_and_is_not_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the refusing guard every round is rolled back: the run fails (it kept no
    # model), although the initial model's metric is there to read.
    (tmp_path / "never_guard.py").write_text(REFUSING_GUARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    space = {"guard.enabled": {"choices": [True, False]}}
    spec = _spec(tmp_path, {"space": space}, rounds=1, guard={"name": "never_guard:Never"})
    spec.output_dir.mkdir(parents=True)
    made = optuna.create_study(study_name="s", storage=default_storage(spec), direction="maximize")
    made.enqueue_trial({"guard.enabled": True})
    made.enqueue_trial({"guard.enabled": False})

    result = tune(spec, trials=1, study_name="s")

    failed, complete = sorted(result.study.trials, key=lambda t: t.number)
    assert failed.state.name == "FAIL", failed.values
    assert failed.user_attrs["status"] == "failed"
    assert "rolled back" in failed.user_attrs["error"]
    assert complete.state.name == "COMPLETE" and complete.params == {"guard.enabled": False}


def test_a_study_whose_every_trial_fails_ends_and_exits_1(tmp_path: Path) -> None:
    # Every point of this space is refused across fields (1 learner sampled of 6 is
    # fewer than min 3): the study gives up instead of drawing failed trials forever.
    space = {"sampling.fraction": {"choices": [0.2]}, "sampling.min_learners": {"choices": [3]}}
    spec = _spec(tmp_path, {"space": space}, rounds=1)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))

    out = fedpilot("tune", str(path), "--trials", "2", "--json", cwd=tmp_path, timeout=120)

    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    summary = json.loads(out.stdout)
    assert summary["best"] == [] and summary["best_spec"] is None
    study = optuna.load_study(study_name=spec.name, storage=default_storage(spec))
    failed = [t for t in study.trials if "skipped" not in t.user_attrs]
    assert len(failed) == 3 and all(t.state.name == "FAIL" for t in failed)
    assert all("sampling.min_learners" in t.user_attrs["error"] for t in failed)


def test_an_interrupted_study_leaves_its_mlflow_run_killed_not_finished(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {"space": {"local.lr": {"low": 0.01, "high": 0.5}}},
        rounds=2,
        tracking={"enabled": True},
    )

    def ctrl_c(trial: int, round_: int, value: float | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(spec, trials=2, study_name="cut", observe_round=ctrl_c)

    from mlflow import MlflowClient

    study = optuna.load_study(study_name="cut", storage=default_storage(spec))
    parent = MlflowClient(tracking_uri=spec.mlflow_uri()).get_run(
        study.user_attrs["mlflow_parent_run_id"]
    )
    assert parent.info.status == "KILLED"
