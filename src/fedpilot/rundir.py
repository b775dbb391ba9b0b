"""The layout of a run directory, named in one place.

A run lives in ``<output_dir>/<run-id>/``; every module that writes or reads one of its
files gets the file's path from :class:`RunDir`, so a file is named once::

    <output_dir>/
        mlflow.db              MLflow's store when the spec names no tracking URI
        <run-id>/
            spec.yaml          the resolved spec the run started with
            events.jsonl       every event of the run, one JSON object a line
            audit.jsonl        the hash-chained, signed audit log
            audit.pub          the public half of the key that signs it
            report.html        ``fedpilot report``'s page
            status.json        where the run stands, rewritten as it goes
            checkpoints/       the global model and the run's state after each round
            mlflow_run_id      the MLflow run this run logs to
            mlflow_uri         the MLflow store it logs to, resolved when the run was made
            run.lock           held (flock) by the process that runs the run
            server-error.txt   why a Flower ServerApp stopped, when it stopped on an error
            flower/            ``fedpilot server``'s SuperLink state, logs and app bundle
            stop-request.json  another process asks the run to stop (``fedpilot runs stop``)
            metrics.url        where the run's Prometheus metrics are served, while it runs
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from fedpilot.errors import RunDirInUse, UserError


def mlflow_db(output_dir: Path) -> Path:
    """Where MLflow's SQLite store is kept for the runs of ``output_dir`` by default."""
    return output_dir / "mlflow.db"


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (none of them need exist).

    Args:
        path: The run's folder, ``<output_dir>/<run-id>``.
    """

    path: Path

    @property
    def run_id(self) -> str:
        """The run's id: its folder's name."""
        return self.path.name

    @property
    def spec(self) -> Path:
        """The resolved spec (what ``--resume`` continues)."""
        return self.path / "spec.yaml"

    @property
    def events(self) -> Path:
        """The event log."""
        return self.path / "events.jsonl"

    @property
    def audit(self) -> Path:
        """The audit log: hash-chained, signed JSON lines (:mod:`fedpilot.audit`)."""
        return self.path / "audit.jsonl"

    @property
    def audit_public_key(self) -> Path:
        """The public key that verifies the audit log's signatures (PEM)."""
        return self.path / "audit.pub"

    @property
    def report(self) -> Path:
        """The run's HTML report (``fedpilot report``)."""
        return self.path / "report.html"

    @property
    def status(self) -> Path:
        """The status file."""
        return self.path / "status.json"

    @property
    def checkpoints(self) -> Path:
        """The folder of checkpoints."""
        return self.path / "checkpoints"

    @property
    def mlflow_run_id(self) -> Path:
        """The MLflow run id (read back on resume)."""
        return self.path / "mlflow_run_id"

    @property
    def mlflow_uri(self) -> Path:
        """The MLflow tracking store of the run, absolute (a resume from another folder
        logs to the same store)."""
        return self.path / "mlflow_uri"

    @property
    def lock(self) -> Path:
        """Locked (``flock``) by the process running the run: see :class:`RunLock`."""
        return self.path / "run.lock"

    @property
    def server_error(self) -> Path:
        """Why the Flower ServerApp stopped on an error."""
        return self.path / "server-error.txt"

    @property
    def flower(self) -> Path:
        """``fedpilot server``'s working folder (SuperLink database, logs, the app bundle)."""
        return self.path / "flower"

    @property
    def stop_request(self) -> Path:
        """Another process's request that the run stop after its round, with the reason."""
        return self.path / "stop-request.json"

    @property
    def metrics_url(self) -> Path:
        """Where the running process serves the run's metrics (``runtime.metrics_port``)."""
        return self.path / "metrics.url"

    @property
    def markers(self) -> tuple[Path, ...]:
        """The files any one of which makes a folder a run directory."""
        return (self.status, self.events, self.spec)


@dataclass(frozen=True)
class LockHolder:
    """The process that holds a run directory's lock, as it wrote itself down."""

    pid: int | None
    host: str | None

    def __str__(self) -> str:
        pid = "an unknown pid" if self.pid is None else f"pid {self.pid}"
        return pid + (f" on {self.host}" if self.host else "")


class RunLock:
    """The exclusive lock of a run directory, held for as long as a process runs the run.

    ``flock`` on :attr:`RunDir.lock`: the kernel releases it when its process ends, however
    it ends, so a free lock under a status of ``running`` means the process died (SIGKILL,
    a lost machine) and a second process cannot run the same run at the same time. Forked
    children (a data loader's workers) close their copy, so an orphan cannot keep it.

    Use :meth:`acquire`, then :meth:`release` (or the lock as a context manager).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path, *, patience: float = 1.0) -> RunLock:
        """Take the lock of ``run_dir`` before anything in it is changed.

        Args:
            run_dir: The run directory (it must exist).
            patience: Seconds to retry while the lock is taken: a reader
                (:func:`lock_holder`) takes it shared for a moment.

        Raises:
            RunDirInUse: Another process runs the run; the message names its pid.
        """
        path = RunDir(run_dir).lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock the run directory {str(run_dir)!r}: {exc}") from exc
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                os.close(fd)
                holder = lock_holder(run_dir) or LockHolder(None, None)
                raise RunDirInUse(
                    f"run directory {str(run_dir)!r} is in use by another fedpilot process "
                    f"({holder}): wait for it to end, or ask it to stop with "
                    f"`fedpilot runs stop {RunDir(run_dir).run_id}`"
                ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        _HELD.add(fd)
        return cls(path, fd)

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race a new holder)."""
        if self._fd is not None:
            _HELD.discard(self._fd)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def lock_holder(run_dir: Path) -> LockHolder | None:
    """Who holds the lock of ``run_dir``; None when nobody does (or the run directory has
    no lock file: it was made before run directories were locked)."""
    path = RunDir(run_dir).lock
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            # Shared, so that two readers never see each other as the holder.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> LockHolder:
    try:
        data = json.loads(os.pread(fd, 4096, 0))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        return LockHolder(None, None)
    pid, host = data.get("pid"), data.get("host")
    return LockHolder(
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host if isinstance(host, str) else None,
    )


_HELD: set[int] = set()
"""The descriptors of the locks this process holds."""


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)

__all__ = ["LockHolder", "RunDir", "RunLock", "lock_holder", "mlflow_db"]
