"""Fault injection: SIGINT, SIGTERM and SIGKILL at random moments of real `fedpilot run`
processes, then `--resume` until the run completes. Every chain of cut runs must end with
exactly the uninterrupted run's model, an MLflow run with every round exactly once that
ended FINISHED, and `fedpilot runs list` saying completed N/N; after every cut by SIGINT or
SIGTERM the run's own records already agree with its last checkpoint.

Several trials share one run: each resumed process is the next trial's victim, so a
trial costs one process start. The moments are drawn against the run's progress, not the
clock, so they fall where they should however busy the machine: while the process starts,
soon after its run began, or within a few milliseconds after a round's checkpoint (often
before that round's records). A signal that lands before the process began its run (while
Python imports fedpilot) finds nothing to cut: it is counted apart.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clitools import EXAMPLES, fedpilot
from fedpilot.orchestrator import load_checkpoint

ROUNDS = 24
SPEC = [
    str(EXAMPLES / "digits.yaml"),
    "--set", f"rounds={ROUNDS}",
    "--set", "data.num_learners=4",
    "--set", "sampling.min_learners=2",
    "--set", "local.epochs=1",
    "--set", "evaluation.federated_every=0",
    "--set", "tracking.log_model=false",  # the rounds' records are what is checked
]  # fmt: skip
CHAINS = 3
TRIALS_PER_CHAIN = 10
STARTUP_SHARE = 0.15
"""The share of trials whose signal comes while the process starts (imports, assembly)."""
OPENING_SHARE = 0.15
"""The share whose signal comes soon after the run began (MLflow opening its run)."""
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(
        [sys.executable, "-m", "fedpilot", *args], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _first_checkpoint(out: Path, known: set[Path], proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = {p.parent.parent for p in out.glob("*/checkpoints/round-*.npz")} - known
        if found:
            return found.pop()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("the run never wrote its first checkpoint")


def _mlflow_rounds(run_dir: Path) -> tuple[list[int], str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    steps = sorted(m.step for m in client.get_metric_history(run_id, "participants"))
    return steps, client.get_run(run_id).info.status


def _cut(
    proc: subprocess.Popen[str], name: str, delay: float, *, after: Callable[[], bool]
) -> tuple[int, str]:
    """Signal ``proc`` ``delay`` s after ``after()`` holds (unless it ended before);
    its exit code and stderr. Waiting for progress rather than for a time keeps the
    moments inside the run however busy the machine."""
    deadline = time.monotonic() + 120
    while not after() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(SIGNALS[name])
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.slow
def test_random_signals_then_resume_lose_nothing(tmp_path: Path) -> None:
    reference = fedpilot(
        "run", *SPEC, "--set", "tracking.enabled=false", "--json",
        "--output-dir", str(tmp_path / "whole"), cwd=tmp_path,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    want = load_checkpoint(Path(json.loads(reference.stdout)["run_dir"]))

    rng = random.Random(13)
    outcomes: Counter[tuple[str, str]] = Counter()
    out = tmp_path / "runs"  # one MLflow store: creating one takes seconds
    done: set[Path] = set()
    for _ in range(CHAINS):
        proc = _start(["run", *SPEC, "--output-dir", str(out)], tmp_path)
        run_dir = _first_checkpoint(out, done, proc)  # so there is a run to resume
        done.add(run_dir)
        starts = 0  # the first process has begun its run: it wrote its first checkpoint
        for _ in range(TRIALS_PER_CHAIN):
            name = rng.choice(sorted(SIGNALS))
            draw = rng.random()
            if draw < STARTUP_SHARE:
                code, stderr = _cut(proc, name, rng.uniform(0.0, 1.0), after=lambda: True)
            elif draw < STARTUP_SHARE + OPENING_SHARE:
                began_run = functools.partial(_began, run_dir, starts)
                code, stderr = _cut(proc, name, rng.uniform(0.0, 0.5), after=began_run)
            else:
                target = min(ROUNDS, load_checkpoint(run_dir).round + rng.randint(1, 4))
                reached = functools.partial(_reached, run_dir, target)
                code, stderr = _cut(proc, name, rng.uniform(0.0, 0.03), after=reached)
            began = _run_starts(run_dir) > starts
            outcome = _outcome(code) if began else "before the run began"
            if code == -signal.SIGKILL and _records_behind(run_dir):
                outcome = "killed between a checkpoint and its records"
            outcomes[name, outcome] += 1
            if began:
                assert "Traceback" not in stderr, stderr
            if began and name != "SIGKILL" and code == 130:
                # Cut cleanly: status, MLflow and the checkpoint agree at once.
                _assert_records_agree(run_dir, "interrupted", "KILLED")
            starts = _run_starts(run_dir)
            proc = _start(["run", "--resume", str(run_dir)], tmp_path)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr

        got = load_checkpoint(run_dir)
        assert got.round == ROUNDS
        for mine, theirs in zip(got.weights, want.weights, strict=True):
            np.testing.assert_array_equal(mine, theirs)
        _assert_records_agree(run_dir, "completed", "FINISHED")
        listed = fedpilot("runs", "list", "--json", "-o", str(out), cwd=tmp_path)
        (record,) = [r for r in json.loads(listed.stdout) if r["run_id"] == run_dir.name]
        assert (record["status"], record["rounds_completed"], record["total_rounds"]) == (
            "completed", ROUNDS, ROUNDS,
        )  # fmt: skip
    print("fault injection, trials by (signal, outcome):", dict(sorted(outcomes.items())))
    assert sum(outcomes.values()) >= 30


def _run_starts(run_dir: Path) -> int:
    """How many processes began the run (each writes RunStarted once its handlers are on)."""
    try:
        return (run_dir / "events.jsonl").read_bytes().count(b'"RunStarted"')
    except FileNotFoundError:
        return 0


def _records_behind(run_dir: Path) -> bool:
    """Whether MLflow lacks a round the checkpoint has (made good by the resume)."""
    if not (run_dir / "mlflow_run_id").is_file():
        return False
    return max(_mlflow_rounds(run_dir)[0], default=0) < load_checkpoint(run_dir).round


def _reached(run_dir: Path, round_: int) -> bool:
    """Whether round ``round_`` (or a later one: older files are pruned) is checkpointed."""
    wanted = f"round-{round_:06d}.npz"
    return any(p.name >= wanted for p in (run_dir / "checkpoints").glob("round-*.npz"))


def _began(run_dir: Path, starts: int) -> bool:
    return _run_starts(run_dir) > starts


def _outcome(code: int) -> str:
    return {0: "finished first", 130: "interrupted", -9: "killed"}.get(code, f"exit {code}")


def _assert_records_agree(run_dir: Path, status: str, mlflow_status: str) -> None:
    rounds = load_checkpoint(run_dir).round
    written = json.loads((run_dir / "status.json").read_text())
    assert (written["status"], written["rounds_completed"]) == (status, rounds)
    steps, ended = _mlflow_rounds(run_dir)
    assert steps == list(range(1, rounds + 1))  # every round exactly once
    assert ended == mlflow_status
    ends = [
        event["round"]
        for event in map(json.loads, (run_dir / "events.jsonl").read_text().splitlines())
        if event["event"] in ("RoundCompleted", "RoundFailed")
    ]
    assert sorted(set(ends)) == list(range(1, rounds + 1))
