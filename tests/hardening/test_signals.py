"""Signals that lose nothing: SIGINT and SIGTERM never cut a checkpoint, an MLflow write or
a round's records, and after SIGKILL at the worst moment the resumed run completes its
records from its checkpoint, without a round twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import event

from clitools import EXAMPLES, SMALL_DIGITS, fedpilot
from federations import digits_spec
from fedpilot.launch import open_federation, run_federation
from fedpilot.orchestrator import Callback, RoundSummary, load_checkpoint
from fedpilot.spec import FederationSpec
from fedpilot.tracking import EventLogCallback, MLflowCallback, StatusFileCallback
from fedpilot.types import RoundContext

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _spec(tmp_path: Path, name: str) -> FederationSpec:
    return digits_spec(
        tmp_path, name, tracking={"enabled": True, "mlflow_uri": f"sqlite:///{tmp_path}/m.db"}
    )


def _mlflow(run_dir: Path, uri: str) -> tuple[list[int], str]:
    """The rounds the run's MLflow run has (one entry per logged step) and its status."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    steps = sorted(m.step for m in client.get_metric_history(run_id, "participants"))
    return steps, client.get_run(run_id).info.status


def _round_ends(run_dir: Path) -> list[int]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    ends = ("RoundCompleted", "RoundFailed")
    return sorted(e["round"] for e in map(json.loads, lines) if e["event"] in ends)


def _status(run_dir: Path) -> tuple[str, int]:
    written = json.loads((run_dir / "status.json").read_text())
    return written["status"], written["rounds_completed"]


class SignalAt(Callback):
    """Sends this process ``signum`` at the end of round ``round_``, before the callbacks
    after it have recorded the round (the round is checkpointed already)."""

    def __init__(self, round_: int, signum: int) -> None:
        self.round, self.signum = round_, signum

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        if summary.round == self.round:
            os.kill(os.getpid(), self.signum)


def _observers_after(first: Callback) -> list[Callback]:
    return [first, EventLogCallback(), MLflowCallback(), StatusFileCallback()]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_between_the_checkpoint_and_the_records_waits_for_the_records(
    tmp_path: Path, signum: int
) -> None:
    spec = _spec(tmp_path, "between")
    observers = _observers_after(SignalAt(2, signum))
    with open_federation(spec, callbacks=observers, default_tracking=False) as federation:
        result = federation.run()
    run_dir = federation.run_dir
    assert (result.status, result.rounds_completed) == ("interrupted", 2)
    assert load_checkpoint(run_dir).round == 2
    # Round 2 is in every record (it was lost from MLflow and the event log before).
    assert _mlflow(run_dir, spec.mlflow_uri()) == ([1, 2], "KILLED")
    assert _round_ends(run_dir) == [1, 2]
    assert _status(run_dir) == ("interrupted", 2)

    resumed = run_federation(spec, resume_dir=run_dir)
    assert (resumed.status, resumed.rounds_completed) == ("completed", 4)
    assert _mlflow(run_dir, spec.mlflow_uri()) == ([1, 2, 3, 4], "FINISHED")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_mlflow_writes_to_sqlite_waits_for_the_write(
    tmp_path: Path, signum: int, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, "sqlite")
    fired: list[str] = []

    def signal_mid_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Inside MLflow's transaction logging round 2's metrics: the worst moment.
        if fired or not statement.lstrip().upper().startswith("INSERT INTO METRICS"):
            return
        if any(spec.output_dir.glob("*/checkpoints/round-000002.npz")):  # round 2's log
            fired.append(statement)
            os.kill(os.getpid(), signum)

    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", signal_mid_insert)
    try:
        result = run_federation(spec)
    finally:
        event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", signal_mid_insert)
    assert fired
    (run_dir,) = spec.output_dir.iterdir()
    assert (result.status, result.rounds_completed) == ("interrupted", 2)
    assert _mlflow(run_dir, spec.mlflow_uri()) == ([1, 2], "KILLED")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "database is locked" not in err
    assert "MLflow tracking failed" not in err


_KILLED_BETWEEN = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from federations import digits_spec
    from fedpilot.launch import open_federation
    from fedpilot.orchestrator import Callback
    from fedpilot.tracking import EventLogCallback, MLflowCallback, StatusFileCallback

    class KillAt(Callback):
        def on_round_end(self, *, ctx, summary):
            if summary.round == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    spec = digits_spec(Path({tmp!r}), "killed", tracking={tracking!r})
    observers = [EventLogCallback(), MLflowCallback(), StatusFileCallback()]
    observers.insert({where}, KillAt())
    with open_federation(spec, callbacks=observers, default_tracking=False) as federation:
        federation.run()
    """
)


@pytest.mark.parametrize("where", [0, 1], ids=["before-any-record", "before-mlflow"])
def test_sigkill_between_the_checkpoint_and_the_records_is_made_good_on_resume(
    tmp_path: Path, where: int
) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    script = _KILLED_BETWEEN.format(
        tests=str(Path(__file__).parent.parent), tmp=str(tmp_path), where=where,
        tracking={"enabled": True, "mlflow_uri": uri},
    )  # fmt: skip
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run_dir,) = (tmp_path / "killed").iterdir()
    assert load_checkpoint(run_dir).round == 2
    assert _mlflow(run_dir, uri)[0] == [1]  # round 2's log was lost with the process

    resumed = fedpilot("run", "--resume", str(run_dir), "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _mlflow(run_dir, uri) == ([1, 2, 3, 4], "FINISHED")
    assert _round_ends(run_dir) == [1, 2, 3, 4]
    assert _status(run_dir) == ("completed", 4)
    listed = fedpilot("runs", "list", "--json", "-o", str(tmp_path / "killed"), cwd=tmp_path)
    (record,) = json.loads(listed.stdout)
    assert (record["status"], record["rounds_completed"]) == ("completed", 4)


def test_a_resume_from_an_older_checkpoint_logs_no_round_twice(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "older")
    observers = _observers_after(SignalAt(3, signal.SIGINT))
    with open_federation(spec, callbacks=observers, default_tracking=False) as federation:
        federation.run()
    run_dir = federation.run_dir
    assert _mlflow(run_dir, spec.mlflow_uri())[0] == [1, 2, 3]
    # The newest checkpoint is gone (damaged and set aside, say): round 3 is run again.
    (run_dir / "checkpoints" / "round-000003.npz").unlink()
    resumed = run_federation(spec, resume_dir=run_dir)
    assert resumed.status == "completed"
    assert _mlflow(run_dir, spec.mlflow_uri()) == ([1, 2, 3, 4], "FINISHED")


def test_sigterm_ends_a_cli_run_interrupted_in_every_record(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["run", str(EXAMPLES / "digits.yaml"), *SMALL_DIGITS, "--set", "rounds=400",
            "--set", "tracking.enabled=true", "--output-dir", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedpilot", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not list(out.glob("*/checkpoints/round-000002.npz")):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = (p for p in out.iterdir() if (p / "spec.yaml").is_file())
    rounds = load_checkpoint(run_dir).round
    assert _status(run_dir) == ("interrupted", rounds)
    assert _mlflow(run_dir, f"sqlite:///{out / 'mlflow.db'}") == (
        list(range(1, rounds + 1)), "KILLED",
    )  # fmt: skip
    listed = fedpilot("runs", "list", "--json", "-o", str(out), cwd=tmp_path)
    (record,) = json.loads(listed.stdout)
    assert (record["status"], record["rounds_completed"]) == ("interrupted", rounds)
    assert "SIGTERM" in record["error"]


class SwallowedAt(Callback):
    """In round ``round_``, a signal arrives while a garbage-collector callback runs:
    Python raises KeyboardInterrupt there and swallows it ("Exception ignored in ...").
    Seen with SIGTERM in SQLAlchemy's weakref callbacks: the run went on and exited 0."""

    def __init__(self, round_: int, signum: int) -> None:
        self.round, self.signum = round_, signum

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[str, ...]) -> None:
        if ctx.round == self.round:
            doomed = _Doomed()
            ref = weakref.ref(doomed, lambda _: os.kill(os.getpid(), self.signum))
            del doomed  # the callback runs here, the signal with it
            assert ref() is None


class _Doomed:
    pass


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_swallowed_where_it_was_raised_still_ends_the_run(
    tmp_path: Path, signum: int
) -> None:
    spec = digits_spec(tmp_path, "swallowed")
    with open_federation(spec, callbacks=[SwallowedAt(2, signum)]) as federation:
        result = federation.run()
    # Round 2 itself ran (the signal never reached it); the run ends after it.
    assert (result.status, result.rounds_completed) == ("interrupted", 2)
    assert _status(federation.run_dir) == ("interrupted", 2)
