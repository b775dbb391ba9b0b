"""The `tune:` section: a space over spec fields, checked against the spec itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clitools import fedpilot
from federations import digits_spec
from fedpilot.errors import SpecError
from fedpilot.spec import validate_spec


def _with_tune(tmp_path: Path, tune: dict[str, Any]) -> dict[str, Any]:
    raw = digits_spec(tmp_path, "spec").model_dump(mode="json")
    raw["tune"] = tune
    return raw


def test_a_space_over_spec_fields_is_accepted(tmp_path: Path) -> None:
    spec = validate_spec(
        _with_tune(
            tmp_path,
            {
                "space": {
                    "local.lr": {"low": 0.001, "high": 1.0, "log": True},
                    "local.epochs": {"low": 1, "high": 3},
                    "strategy.server_lr": {"choices": [0.5, 1.0]},
                    "sampling.fraction": {"low": 0.5, "high": 1.0, "step": 0.25},
                },
                "sampler": {"name": "random"},
                "pruner": {"name": "hyperband"},
            },
        )
    )
    assert spec.tune is not None
    kinds = {path: param.kind for path, param in spec.tune.space.items()}
    assert kinds == {
        "local.lr": "float",
        "local.epochs": "int",
        "strategy.server_lr": "categorical",
        "sampling.fraction": "float",
    }
    assert spec.tune.guarded_metric(spec) == "accuracy"
    assert spec.tune.study_direction(spec) == "maximize"
    assert spec.tune.resolved_pruner().name == "hyperband"


@pytest.mark.parametrize(
    ("space", "field", "says"),
    [
        ({"local.lrr": {"low": 0.1, "high": 1.0}}, "tune.space.local.lrr", "unknown key"),
        ({"local.lr": {"low": -1.0, "high": 1.0}}, "tune.space.local.lr", "greater than 0"),
        ({"local.lr": {"low": 2.0, "high": 1.0}}, "tune.space.local.lr", "<= `high`"),
        ({"local.lr": {"low": 0.0, "high": 1.0, "log": True}}, "tune.space.local.lr", "log"),
        ({"local.lr": {"choices": []}}, "tune.space.local.lr", "at least one"),
        ({"local.momentum": {"low": 0.0, "high": 1.5}}, "tune.space.local.momentum", "1.5"),
        ({"strategy.mu": {"choices": [0.1]}}, "tune.space.strategy.mu", "fedprox"),
        ({"task.params.hiden": {"low": 8, "high": 16}}, "tune.space.task.params.hiden", "no spec"),
        ({"local.epochs": {"low": 1, "high": 3, "step": 0.5, "type": "int"}},
         "tune.space.local.epochs", "whole"),
    ],
)  # fmt: skip
def test_a_bad_space_names_the_field(
    tmp_path: Path, space: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(SpecError) as caught:
        validate_spec(_with_tune(tmp_path, {"space": space}))
    assert caught.value.field == field
    assert f"`{field}`" in str(caught.value) and says in str(caught.value)


@pytest.mark.parametrize("path", ["strategy.server_lr", "task.params.a.b", "task.name"])
def test_learner_tuning_takes_local_settings_and_task_params_only(
    tmp_path: Path, path: str
) -> None:
    bad = {"space": {}, "learner": {"space": {path: {"choices": [1.0]}}}}
    with pytest.raises(SpecError) as caught:
        validate_spec(_with_tune(tmp_path, bad))
    assert caught.value.field == f"tune.learner.space.{path}"
    assert "task.params.<name>" in str(caught.value)


def test_a_learner_may_tune_a_task_param_the_spec_sets(tmp_path: Path) -> None:
    raw = _with_tune(
        tmp_path, {"learner": {"space": {"task.params.hidden": {"low": 16, "high": 64}}}}
    )
    raw["task"]["params"] = {"hidden": 32}
    validate_spec(raw)


def test_pruning_a_multi_objective_study_is_refused(tmp_path: Path) -> None:
    tune = {
        "space": {"local.lr": {"low": 0.01, "high": 0.1}},
        "objectives": [
            {"metric": "accuracy", "direction": "maximize"},
            {"metric": "bytes", "direction": "minimize"},
        ],
        "pruner": {"name": "median"},
    }
    with pytest.raises(SpecError, match=r"tune\.pruner"):
        validate_spec(_with_tune(tmp_path, tune))
    del tune["pruner"]
    spec = validate_spec(_with_tune(tmp_path, tune))
    assert spec.tune is not None and spec.tune.resolved_pruner().name == "none"


def test_fedpilot_tune_exits_2_naming_the_field(tmp_path: Path) -> None:
    raw = _with_tune(tmp_path, {"space": {"local.lrr": {"low": 0.1, "high": 1.0}}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = fedpilot("tune", str(path), "--trials", "2", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "`tune.space.local.lrr`" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "spec" / "tune.db").exists()
