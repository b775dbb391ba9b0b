"""The README's commands on the default federation (`make run`'s, exactly as shipped,
MLflow included): run examples/digits.yaml, reach the accuracy bar, promote.

One run serves both tests: the federation is the same, and the second only reads what
the first left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clitools import EXAMPLES, fedpilot


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """`fedpilot run examples/digits.yaml` in a fresh directory: (that directory, --json)."""
    cwd = tmp_path_factory.mktemp("default-run")
    ran = fedpilot("run", str(EXAMPLES / "digits.yaml"), "--json", cwd=cwd)
    assert ran.returncode == 0, ran.stderr
    summary: dict[str, Any] = json.loads(ran.stdout)
    return cwd, summary


@pytest.mark.slow
def test_default_federation_reaches_the_accuracy_bar(
    default_run: tuple[Path, dict[str, Any]],
) -> None:
    """`make run`'s federation, exactly as shipped (MLflow included): accuracy >= 0.90."""
    cwd, summary = default_run
    assert summary["rounds_completed"] == 20 and summary["status"] == "completed"
    assert summary["final_metrics"]["accuracy"] >= 0.90
    runs = fedpilot("runs", "list", "--json", cwd=cwd)
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout)[0]["run_id"] == summary["run_id"]


def test_run_the_digits_example_then_promote_it(
    default_run: tuple[Path, dict[str, Any]],
) -> None:
    cwd, _ = default_run
    promoted = fedpilot("models", "promote", "digits", "--json", cwd=cwd)
    assert promoted.returncode == 0, promoted.stderr
    body = json.loads(promoted.stdout)
    # The first promotion has no champion to compare with: the floors alone decide.
    assert (body["champion"], body["champion_before"]) == ("1", None)
    assert body["checked"] == ["floor", "worst_learner_floor"]
    listed = fedpilot("models", "list", cwd=cwd)
    assert listed.returncode == 0 and "digits" in listed.stdout
