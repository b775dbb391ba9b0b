"""The layout of a run directory, named in one place.

A run lives in ``<output_dir>/<run-id>/``; every module that writes or reads one of its
files gets the file's path from :class:`RunDir`, so a file is named once::

    <output_dir>/
        mlflow.db              MLflow's store when the spec names no tracking URI
        <run-id>/
            spec.yaml          the resolved spec the run started with
            events.jsonl       every event of the run, one JSON object a line
            status.json        where the run stands, rewritten as it goes
            checkpoints/       the global model and the run's state after each round
            mlflow_run_id      the MLflow run this run logs to
            server-error.txt   why a Flower ServerApp stopped, when it stopped on an error
            flower/            ``fedpilot server``'s SuperLink state, logs and app bundle
            stop-request.json  another process asks the run to stop (``fedpilot runs stop``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    def markers(self) -> tuple[Path, ...]:
        """The files any one of which makes a folder a run directory."""
        return (self.status, self.events, self.spec)


__all__ = ["RunDir", "mlflow_db"]
