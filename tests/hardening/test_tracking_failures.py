"""A run whose tracking failed says so in its result; first runs at once share a new
MLflow store safely.

A run whose MLflow tracking failed still trained, checkpointed and recorded its model in
its own run directory, so its status stays ``completed`` and it exits 0 (a job controller
must not run it again); its ``--json`` result, ``status.json`` and last console line say
that tracking failed and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from clitools import EXAMPLES, SMALL_DIGITS

ARGS = [str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--set", "rounds=2"]


def _run(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(
        [sys.executable, "-m", "fedpilot", "run", *ARGS, *args], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_run_whose_tracking_failed_says_so_in_its_result(tmp_path: Path) -> None:
    uri = "sqlite:////proc/nope/mlflow.db"  # a folder nobody can make
    bad = ["--set", "tracking.enabled=true", "--set", f"tracking.mlflow_uri={uri}"]
    as_json = _run(*bad, "--json", "--output-dir", str(tmp_path / "a"), cwd=tmp_path)
    out, err = as_json.communicate(timeout=600)
    assert as_json.returncode == 0, err  # the federation itself completed
    result = json.loads(out)
    assert result["status"] == "completed"
    assert "/proc/nope" in result["tracking_error"]
    status = json.loads((Path(result["run_dir"]) / "status.json").read_text())
    assert status["tracking_error"] == result["tracking_error"]
    assert "Traceback" not in err

    shown = _run(*bad, "--output-dir", str(tmp_path / "b"), cwd=tmp_path)
    _, err = shown.communicate(timeout=600)
    assert shown.returncode == 0, err
    assert "tracking failed" in err.strip().splitlines()[-1]
    assert "mlflow ui" not in err  # no MLflow run to open


def test_two_first_runs_at_once_are_both_tracked(tmp_path: Path) -> None:
    out = tmp_path / "fresh"  # no MLflow store yet: both runs create it
    on = ["--set", "tracking.enabled=true", "--json", "--output-dir", str(out)]
    procs = [_run(*on, cwd=tmp_path) for _ in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        assert "already exists" not in stderr
        results.append(json.loads(stdout))
    assert [r["tracking_error"] for r in results] == [None, None]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    for result in results:
        run_id = (Path(result["run_dir"]) / "mlflow_run_id").read_text().strip()
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, "participants")] == [1, 2]


_FIRST_USE = """
import sys, time
from mlflow import MlflowClient
from fedpilot.tracking._mlflow_utils import prepare_store
uri, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:  # every process at the same moment
    time.sleep(0.001)
prepare_store(uri)
MlflowClient(tracking_uri=uri).create_experiment(sys.argv[3])
"""


def test_processes_first_using_a_new_store_at_the_same_moment_all_get_it(tmp_path: Path) -> None:
    # What two first runs at once do, without the seconds of import jitter that make the
    # race rare between whole runs: MLflow alone fails here (`table experiments already
    # exists`, `duplicate column name`) for all but one of them.
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = str(time.time() + 10)  # after every process has imported MLflow
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_USE, uri, start, f"e{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err

    from mlflow import MlflowClient

    names = {e.name for e in MlflowClient(tracking_uri=uri).search_experiments()}
    assert {"e0", "e1", "e2"} <= names
