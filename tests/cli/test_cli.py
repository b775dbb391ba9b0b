"""The `fedpilot` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedpilot.orchestrator import load_checkpoint

ROOT = Path(__file__).parent.parent.parent
EXAMPLES = ROOT / "examples"
SMALL_DIGITS = [
    "--set", "rounds=4",
    "--set", "data.num_learners=4",
    "--set", "sampling.min_learners=2",
    "--set", "local.epochs=1",
    "--set", "tracking.enabled=false",
    "--set", "evaluation.federated_every=0",
]  # fmt: skip


def fedpilot(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedpilot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_json_prints_exactly_one_object_with_the_outcome(tmp_path: Path) -> None:
    out = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--json",
        "--output-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert set(summary) == {
        "run_id", "run_dir", "rounds_completed", "final_metrics", "rollbacks", "status",
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


def _wait_for_round(run_root: Path, round_: int, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for latest in run_root.glob("*/checkpoints/latest"):
            if latest.read_text().strip() >= f"round-{round_:06d}":
                return latest.parent.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"round {round_} never checkpointed")


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_stopped_then_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, how: str) -> None:
    args = ["run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--set", "rounds=5"]
    whole = fedpilot(*args, "--json", "--output-dir", str(tmp_path / "whole"), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    reference = load_checkpoint(Path(json.loads(whole.stdout)["run_dir"]))

    proc = subprocess.Popen(
        [sys.executable, "-m", "fedpilot", *args, "--output-dir", str(tmp_path / "cut")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = _wait_for_round(tmp_path / "cut", 2, proc)
    if how == "kill":
        proc.kill()
        proc.wait()
    else:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
        status = json.loads((run_dir / "status.json").read_text())
        assert status["status"] == "interrupted"
    stopped_at = load_checkpoint(run_dir).round
    assert 2 <= stopped_at < 5

    resumed = fedpilot("run", "--resume", str(run_dir), "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["rounds_completed"] == 5
    final = load_checkpoint(run_dir)
    assert [r.round for r in final.history] == [1, 2, 3, 4, 5]
    for got, want in zip(final.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert final.metrics == reference.metrics


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


@pytest.mark.slow
def test_default_federation_reaches_the_accuracy_bar(tmp_path: Path) -> None:
    """`make run`'s federation, exactly as shipped (MLflow included): accuracy >= 0.90."""
    out = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"), "--json", "--output-dir", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["rounds_completed"] == 20 and summary["status"] == "completed"
    assert summary["final_metrics"]["accuracy"] >= 0.90
    runs = fedpilot("runs", "list", "--json", "--output-dir", str(tmp_path), cwd=tmp_path)
    assert runs.returncode == 0, runs.stderr
    assert json.loads(runs.stdout)[0]["run_id"] == summary["run_id"]
