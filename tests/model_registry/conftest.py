"""Real small digits federations registering their models in one MLflow SQLite store.

Creating the store runs MLflow's migrations (seconds), so a test process shares one output
folder (and its ``mlflow.db``); tests keep apart by registered model name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedpilot.cli.models import models_app
from fedpilot.launch import run_federation
from fedpilot.orchestrator.events import RunResult
from fedpilot.rundir import RunDir
from fedpilot.spec import FederationSpec, validate_spec

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

APPS_DIR = Path(__file__).parent.parent / "_apps"


@dataclass(frozen=True)
class Federated:
    spec: FederationSpec
    result: RunResult
    run_dir: Path


def small_digits(output_dir: Path, model_name: str, **raw: Any) -> FederationSpec:
    data: dict[str, Any] = {
        "name": "regtest",
        "seed": 7,
        "task": {"name": "digits-mlp", "params": {"hidden": 16}},
        "data": {"num_learners": 4, "partition": "iid"},
        "rounds": 3,
        "sampling": {"fraction": 1.0, "min_learners": 2},
        "local": {"epochs": 1, "batch_size": 16, "lr": 0.1, "momentum": 0.9},
        "guard": {"enabled": False},
        "registry": {"model_name": model_name},
        "runtime": {"mode": "local", "workers": 0, "round_timeout": 120},
        "output_dir": str(output_dir),
        "base_dir": str(APPS_DIR),
    }
    data.update(raw)
    return validate_spec(data)


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry") / "runs"


@pytest.fixture(scope="session")
def federate(runs_dir: Path) -> Callable[..., Federated]:
    """Runs a small digits federation to its end; it registers under ``model_name``."""

    def run(model_name: str, **raw: Any) -> Federated:
        spec = small_digits(runs_dir, model_name, **raw)  # raises SpecError for a bad spec
        before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
        result = run_federation(spec)
        (run_dir,) = {p for p in set(runs_dir.iterdir()) - before if RunDir(p).spec.is_file()}
        return Federated(spec, result, run_dir)

    return run


@pytest.fixture(scope="session")
def models(runs_dir: Path) -> Callable[..., Any]:
    """``fedpilot models <args> -o <runs_dir>``: (exit code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(models_app, [*args, "-o", str(runs_dir)], env={"COLUMNS": "200"})

    return invoke


@pytest.fixture(scope="session")
def spec_for(runs_dir: Path) -> Callable[..., FederationSpec]:
    """The spec :func:`federate` runs, for a test that drives the run itself."""
    return lambda model_name, **raw: small_digits(runs_dir, model_name, **raw)
