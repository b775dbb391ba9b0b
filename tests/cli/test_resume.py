"""Kill or interrupt a run, resume it, and get exactly the uninterrupted run's model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clitools import EXAMPLES, SMALL_DIGITS, fedpilot
from fedpilot.orchestrator import RunState, load_checkpoint


def _wait_for_round(run_root: Path, round_: int, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for checkpoint in run_root.glob("*/checkpoints/round-*.npz"):
            if checkpoint.name >= f"round-{round_:06d}.npz":
                return checkpoint.parent.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"round {round_} never checkpointed")


# Enough rounds that the stop lands mid-run however fast the machine: a round takes
# milliseconds, and the signal follows the second checkpoint within a 50 ms poll, so
# finishing first would need 200 rounds in that time.
ROUNDS = 200
ARGS = ["run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--set", f"rounds={ROUNDS}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RunState:
    """The uninterrupted run, once: every way of stopping is compared with the same one."""
    tmp = tmp_path_factory.mktemp("whole")
    whole = fedpilot(*ARGS, "--json", "--output-dir", str(tmp / "runs"), cwd=tmp)
    assert whole.returncode == 0, whole.stderr
    return load_checkpoint(Path(json.loads(whole.stdout)["run_dir"]))


@pytest.mark.parametrize("how", ["kill", "interrupt", "terminate"])
def test_stopped_then_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, reference: RunState, how: str
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedpilot", *ARGS, "--output-dir", str(tmp_path / "cut")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = _wait_for_round(tmp_path / "cut", 2, proc)
    if how == "kill":
        proc.kill()
        proc.wait()
    else:
        # SIGTERM (Kubernetes, `docker stop`) is handled as Ctrl-C is.
        proc.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
        status = json.loads((run_dir / "status.json").read_text())
        assert status["status"] == "interrupted"
        assert ("SIGTERM" in status["error"]) == (how == "terminate")
    stopped_at = load_checkpoint(run_dir).round
    assert 2 <= stopped_at < ROUNDS

    resumed = fedpilot("run", "--resume", str(run_dir), "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["rounds_completed"] == ROUNDS
    final = load_checkpoint(run_dir)
    assert [r.round for r in final.history] == list(range(1, ROUNDS + 1))
    for got, want in zip(final.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert final.metrics == reference.metrics


def test_fedpilot_runs_stop_ends_a_running_federation_stopped_and_resumable(tmp_path: Path) -> None:
    # So many rounds that the run cannot finish before it is asked to stop.
    args = ["run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--set", "rounds=100000"]
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedpilot", *args, "--output-dir", str(out)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        run_dir = _wait_for_round(out, 2, proc)
        asked = fedpilot("runs", "stop", run_dir.name[:-2], "-o", str(out), "--reason", "ops",
                         cwd=tmp_path)  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert proc.wait(timeout=120) == 3  # stopped: neither done nor failed
    finally:
        if proc.poll() is None:
            proc.kill()
    status = json.loads((run_dir / "status.json").read_text())
    assert (status["status"], status["error"]) == ("stopped", "ops")
    assert load_checkpoint(run_dir).round == status["rounds_completed"] >= 2
    again = fedpilot("runs", "stop", run_dir.name, "-o", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "is not running (status stopped)" in again.stderr
    assert not (run_dir / "stop-request.json").exists()  # honoured once: a resume goes on
