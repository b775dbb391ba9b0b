"""Run directories that cannot be corrupted: one process runs a run (the others are
refused), a killed run is not shown running forever, a resume from anywhere logs to the
run's own MLflow store, and no damaged file makes `fedpilot runs` fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clitools import EXAMPLES, SMALL_DIGITS, fedpilot
from fedpilot.cli import main
from fedpilot.launch import new_run_dir
from fedpilot.orchestrator import load_checkpoint
from fedpilot.spec import load_spec

DIGITS = str(EXAMPLES / "digits.yaml")
ENDLESS = [*SMALL_DIGITS, "--set", "rounds=100000"]  # cannot finish while a test looks


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fedpilot", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_round(root: Path, round_: int, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for checkpoint in root.glob("*/checkpoints/round-*.npz"):
            if checkpoint.name >= f"round-{round_:06d}.npz":
                return checkpoint.parent.parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"round {round_} never checkpointed")


def _events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run_dir / "events.jsonl").read_bytes().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return [e for e in events if e["event"] == kind]


def _runs(*args: str, cwd: Path) -> Any:
    shown = fedpilot("runs", *args, "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


# --------------------------------------------------------------------------- the lock


def test_a_second_resume_of_a_running_run_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = _start(["run", DIGITS, *ENDLESS, "--output-dir", str(out)], tmp_path)
    try:
        run_dir = _wait_for_round(out, 2, first)
        # Before: both ran (77 RoundCompleted lines for 40 rounds, duplicate MLflow steps).
        second = fedpilot("run", "--resume", str(run_dir), cwd=tmp_path, timeout=120)
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        assert "is in use by another fedpilot process" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert first.poll() is None  # the first goes on, untouched
        assert len(_events(run_dir, "RunStarted")) == 1
    finally:
        first.kill()
        first.wait()
    rounds = [e["round"] for e in _events(run_dir, "RoundCompleted")]
    assert len(rounds) == len(set(rounds))


def test_fedpilot_server_is_refused_a_run_directory_another_process_holds(tmp_path: Path) -> None:
    flower = ["runtime.mode=flower", "runtime.insecure=true", f"output_dir={tmp_path / 'runs'}"]
    _, run_dir = new_run_dir(load_spec(DIGITS, flower))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from fedpilot.rundir import RunLock; "
         "RunLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)",
         str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        server = fedpilot("server", "--resume", "--run-dir", str(run_dir), "--insecure",
                          cwd=tmp_path, timeout=120)  # fmt: skip
        resumed = fedpilot("run", "--resume", str(run_dir), cwd=tmp_path, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    for refused in (server, resumed):
        assert refused.returncode == 2, refused.stderr
        assert f"in use by another fedpilot process (pid {holder.pid}" in refused.stderr
    # The holder is gone, so is its lock: now the server is refused for what the run
    # lacks, still before its SuperLink starts.
    again = fedpilot("server", "--resume", "--run-dir", str(run_dir), "--insecure",
                     cwd=tmp_path, timeout=120)  # fmt: skip
    assert again.returncode == 2, again.stderr
    assert "no checkpoint to resume" in again.stderr and "Traceback" not in again.stderr
    assert not (run_dir / "flower").exists()


# ----------------------------------------------------------------------- liveness


def test_a_killed_run_is_listed_interrupted_at_its_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    proc = _start(["run", DIGITS, *ENDLESS, "--output-dir", str(out)], tmp_path)
    try:
        run_dir = _wait_for_round(out, 2, proc)
        [live] = _runs("list", "-o", str(out), cwd=tmp_path)
        assert live["status"] == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    checkpoint = load_checkpoint(run_dir)

    # Before: `running 1/40` forever.
    [listed] = _runs("list", "-o", str(out), cwd=tmp_path)
    shown = _runs("show", run_dir.name, "-o", str(out), cwd=tmp_path)
    for record in (listed, shown):
        assert record["status"] == "interrupted"
        assert record["rounds_completed"] == checkpoint.round >= 2
        assert record["final_metrics"] == checkpoint.metrics
        assert "ended without recording the end" in record["error"]
    table = fedpilot("runs", "list", "-o", str(out), cwd=tmp_path)
    assert "interrupted" in table.stdout and "running" not in table.stdout
    stop = fedpilot("runs", "stop", run_dir.name, "-o", str(out), cwd=tmp_path)
    assert stop.returncode == 2 and "is not running (status interrupted)" in stop.stderr


# ---------------------------------------------------------- the run's own tracking store

STOP_AFTER_ROUND_2 = """
import sys
from pathlib import Path
from fedpilot.launch import run_federation
from fedpilot.orchestrator import Callback, Stop
from fedpilot.spec import load_spec

class StopAfterRound2(Callback):
    def on_round_end(self, *, ctx, summary):
        return Stop("stopped for the test") if summary.round == 2 else None

result = run_federation(load_spec(Path(sys.argv[1]), sys.argv[2:]), callbacks=[StopAfterRound2()])
print(result.status)
"""


@pytest.mark.parametrize("record", ["recorded", "made-before-stores-were-recorded"])
def test_resume_from_another_folder_logs_to_the_runs_own_mlflow_store(
    tmp_path: Path, record: str
) -> None:
    from mlflow import MlflowClient

    first_cwd, other_cwd = tmp_path / "here", tmp_path / "elsewhere"
    first_cwd.mkdir()
    other_cwd.mkdir()
    overrides = [v for v in SMALL_DIGITS if v not in ("--set", "tracking.enabled=false")]
    stopped = subprocess.run(
        [sys.executable, "-c", STOP_AFTER_ROUND_2, DIGITS, *overrides],
        cwd=first_cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert stopped.stdout.strip() == "stopped", stopped.stderr
    [run_dir] = (first_cwd / "fedpilot-runs").glob("digits-*")  # output_dir is relative
    if record != "recorded":
        (run_dir / "mlflow_uri").unlink(missing_ok=True)

    resumed = fedpilot("run", "--resume", str(run_dir.resolve()), "--json", cwd=other_cwd)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["rounds_completed"] == 4
    # Before: a new mlflow.db here, and the original MLflow run left behind.
    assert not list(other_cwd.rglob("mlflow.db"))
    client = MlflowClient(tracking_uri=f"sqlite:///{first_cwd / 'fedpilot-runs' / 'mlflow.db'}")
    mlflow_run = client.get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert mlflow_run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "global.accuracy")]
    assert sorted(steps) == [1, 2, 3, 4]


# ---------------------------------------------------------------- damaged run files


def test_binary_bytes_in_the_event_log_are_skipped_and_counted(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    done = fedpilot("run", DIGITS, *SMALL_DIGITS, "--output-dir", str(out), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / json.loads(done.stdout)["run_dir"]
    with (run_dir / "events.jsonl").open("ab") as log:
        log.write(bytes(range(256)) + b"\n\xff\xfe{\n")  # byte 10 is a newline: 3 lines

    # Before: UnicodeDecodeError.
    shown = fedpilot("runs", "show", run_dir.name, "-o", str(out), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "3 unreadable" in shown.stdout
    assert "completed" in shown.stdout and "4/4" in shown.stdout
    detail = _runs("show", run_dir.name, "-o", str(out), cwd=tmp_path)
    assert detail["unreadable_event_lines"] == 3 and len(detail["rounds"]) == 4

    # A resume after a torn line starts its events on a line of their own.
    with (run_dir / "events.jsonl").open("ab") as log:
        log.write(b'{"event": "RoundComp')
    resumed = fedpilot("run", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len(_events_lenient(run_dir, "RunStarted")) == 2
    assert _runs("show", run_dir.name, "-o", str(out), cwd=tmp_path)["unreadable_event_lines"] == 4


def _events_lenient(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    found = []
    for line in (run_dir / "events.jsonl").read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == kind:
            found.append(event)
    return found


GOOD_STATUS = {"run_id": "r", "name": "n", "status": "completed", "rounds_completed": 2}
ROUND = {"event": "RoundCompleted", "round": 1, "status": "completed", "global_metrics": {}}
DEEP = b"[" * 100_000 + b"]" * 100_000

# One damaged file per case, in an otherwise good run directory.
DAMAGED_FILES: dict[str, tuple[str, bytes]] = {
    "events: binary bytes": ("events.jsonl", bytes(range(256))),
    "events: torn last line": ("events.jsonl", b'{"event": "RoundCompleted", "rou'),
    "events: not JSON": ("events.jsonl", b"hello\n{]\n"),
    "events: JSON, not an object": ("events.jsonl", b'[1, 2]\n"RunStarted"\n42\nnull\n'),
    "events: nested too deep": ("events.jsonl", DEEP + b"\n"),
    "events: an integer of 5000 digits": ("events.jsonl", b'{"round": ' + b"9" * 5000 + b"}\n"),
    "events: wrong types": (
        "events.jsonl",
        b'{"event": ["RoundCompleted"]}\n{"event": "RoundCompleted", "round": Infinity}\n'
        b'{"event": "RoundCompleted", "round": NaN, "global_metrics": [1]}\n'
        b'{"event": "RoundCompleted", "round": 2, "global_metrics": {"a": 1e999}, '
        b'"duration": "x", "accepted": 5}\n'
        b'{"event": "RunFinished", "final_metrics": {"accuracy": ' + b"1" * 400 + b"}}\n"
        b'{"event": "RunStarted", "time": "0001-01-01T00:00:00-12:00", "total_rounds": -1}\n'
        b'{"event": "Warning", "round": "x", "code": 5, "message": {"a": 1}}\n',
    ),
    "status: binary bytes": ("status.json", b"\x89PNG\r\n\x1a\n\xff"),
    "status: empty": ("status.json", b""),
    "status: not an object": ("status.json", b"[1, 2, 3]"),
    "status: wrong types": (
        "status.json",
        b'{"status": 5, "rounds_completed": "x", "final_metrics": [1], "started_at": 3, '
        b'"total_rounds": 1e400, "error": {"x": 1}}',
    ),
    "spec: binary bytes": ("spec.yaml", b"\xff\xfe\x00name: x"),
    "spec: not YAML": ("spec.yaml", b"name: [unclosed\n  - : :"),
    "spec: not a mapping": ("spec.yaml", b"- 1\n- 2\n"),
    "spec: wrong types": ("spec.yaml", b"name: [1]\nrounds: {a: 1}\nguard: 7\n"),
    "spec: nested too deep": ("spec.yaml", DEEP),
    "mlflow run id: binary": ("mlflow_run_id", b"\xff\xfe\xfd"),
    "lock: garbage": ("run.lock", b"\xff not json"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_FILES))
def test_runs_list_and_show_never_fail_on_a_damaged_run_file(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    run_dir = out / "20260101-damaged"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps(GOOD_STATUS))
    (run_dir / "events.jsonl").write_text(json.dumps(ROUND) + "\n")
    (run_dir / "spec.yaml").write_text("name: n\nrounds: 2\n")
    name, content = DAMAGED_FILES[case]
    (run_dir / name).write_bytes(content)

    for args in (["list"], ["list", "--json"], ["show", "2026"], ["show", "2026", "--json"]):
        # The real entry point: an exception other than a user error would escape it.
        assert main(["runs", *args, "-o", str(out)]) == 0, args
        printed = capsys.readouterr()
        assert "Traceback" not in printed.err
        if "--json" in args:
            json.loads(printed.out)


def test_a_resume_survives_a_damaged_status_file(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    done = fedpilot("run", DIGITS, *SMALL_DIGITS, "--output-dir", str(out), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / json.loads(done.stdout)["run_dir"]
    (run_dir / "checkpoints" / "round-000004.npz").unlink()
    (run_dir / "status.json").write_bytes(b'{"final_metrics": [1], "warnings": {"x": 1}, "ro')

    resumed = fedpilot("run", "--resume", str(run_dir), "--json", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "status.json").read_bytes())["status"] == "completed"


def test_the_lock_is_not_kept_by_a_forked_child(tmp_path: Path) -> None:
    from fedpilot.rundir import RunLock, lock_holder

    lock = RunLock.acquire(tmp_path)
    holder = lock_holder(tmp_path)
    assert holder is not None and holder.pid == os.getpid()
    wake, waiting = os.pipe()
    started, ready = os.pipe()
    child = os.fork()
    if child == 0:  # a data loader's worker, say: it outlives the run's release
        os.close(waiting)
        os.write(ready, b"x")  # os.fork returned here: the at-fork hooks have run
        os.read(wake, 1)
        os._exit(0)
    os.read(started, 1)
    try:
        lock.release()
        free = lock_holder(tmp_path) is None
    finally:
        os.write(waiting, b"x")
        os.waitpid(child, 0)
    assert free
    RunLock.acquire(tmp_path).release()
