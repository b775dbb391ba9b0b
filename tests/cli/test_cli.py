"""The `fedpilot` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
from pathlib import Path

from clitools import EXAMPLES, SMALL_DIGITS, fedpilot


def test_json_prints_exactly_one_object_with_the_outcome(tmp_path: Path) -> None:
    out = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--json",
        "--output-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary) == {
        "run_id", "run_dir", "rounds_completed", "final_metrics", "rollbacks", "status", "error",
        "tracking_error",
    }  # fmt: skip
    assert summary["status"] == "completed" and summary["rounds_completed"] == 4
    assert 0.5 < summary["final_metrics"]["accuracy"] <= 1.0
    assert Path(summary["run_dir"]).is_dir()
    assert out.stdout.count("\n") == 1


def test_bad_spec_exits_2_with_field_and_value(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\ntask: {name: digits-mlp}\nsampling: {fraction: 1.5}\n")
    for args in (["run", str(spec)], ["spec", "check", str(spec)]):
        out = fedpilot(*args, cwd=tmp_path)
        assert out.returncode == 2
        assert "sampling.fraction" in out.stderr and "1.5" in out.stderr
        assert "Traceback" not in out.stderr
    unknown = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"), "--set", "task.name=nope", cwd=tmp_path
    )
    assert unknown.returncode == 2 and "task.name" in unknown.stderr and "nope" in unknown.stderr


def test_spec_check_and_schema(tmp_path: Path) -> None:
    ok = fedpilot("spec", "check", str(EXAMPLES / "digits.yaml"), "--show", cwd=tmp_path)
    assert ok.returncode == 0 and "dirichlet" in ok.stdout
    schema = fedpilot("spec", "schema", cwd=tmp_path)
    assert json.loads(schema.stdout)["title"] == "FederationSpec"


def test_flower_clientapp_example_runs_unmodified(tmp_path: Path) -> None:
    out = fedpilot(
        "run", str(EXAMPLES / "flower-clientapp.yaml"), "--json",
        "--set", "tracking.enabled=false", "--output-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rounds_completed"] == 5
    assert summary["final_metrics"]["federated_accuracy"] > 0.85


def test_resume_of_a_non_run_is_a_user_error(tmp_path: Path) -> None:
    out = fedpilot("run", "--resume", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "not a run directory" in out.stderr


def test_centralized_baseline_runs(tmp_path: Path) -> None:
    out = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--centralized", "--json",
        "--output-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["run_id"].startswith("digits-centralized")
    assert summary["final_metrics"]["accuracy"] > 0.85


# `make run`'s federation and its accuracy bar: tests/model_registry/test_example.py,
# on the one default run it promotes.
