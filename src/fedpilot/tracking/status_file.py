"""``<run_dir>/status.json``: where a run stands, for `fedpilot runs` and operators."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import UTC, datetime
from typing import Any, TypedDict

from fedpilot.orchestrator.events import Callback, RoundSummary, RunInfo, RunResult
from fedpilot.rundir import RunDir
from fedpilot.types import RoundContext


class WarningEntry(TypedDict):
    """The latest warning of one code in ``status.json``."""

    round: int
    message: str
    count: int
    """How many warnings of this code the run has had."""


class StatusFile(TypedDict, total=False):
    """Schema of ``status.json`` (written by :class:`StatusFileCallback`, read by the run
    store)."""

    run_id: str
    name: str
    mode: str
    """``federated`` or ``centralized``."""
    status: str
    """``running``, ``completed``, ``stopped``, ``interrupted`` or ``failed``."""
    rounds_completed: int
    total_rounds: int
    final_metrics: dict[str, float]
    rollbacks: int
    started_at: str
    """ISO 8601."""
    updated_at: str
    error: str | None
    """Why the run failed, was stopped or interrupted."""
    tracking_error: str | None
    """Why the run's MLflow tracking failed, when it did."""
    warnings: dict[str, WarningEntry]
    """The latest warning of each code (the event log has every one)."""


class StatusFileCallback(Callback):
    """Rewrites ``status.json`` when the run starts and ends, at a warning of a new code,
    and after a round when the last write is at least :attr:`min_interval_s` old: short
    rounds would otherwise spend more on the file system than on training (the event log
    has every round anyway)."""

    min_interval_s: float = 1.0

    def __init__(self) -> None:
        self._status: StatusFile = {}
        self._run_dir: RunDir | None = None
        self._written_at = -math.inf

    def on_run_start(self, *, run: RunInfo) -> None:
        self._run_dir = RunDir(run.run_dir)
        previous = _previous_status(self._run_dir)
        self._status = {
            "run_id": run.run_id,
            "name": run.spec.name,
            "mode": run.mode,
            "status": "running",
            "rounds_completed": max(0, run.start_round - 1),
            "total_rounds": run.spec.rounds,
            "final_metrics": previous.get("final_metrics", {}),
            "rollbacks": previous.get("rollbacks", 0),
            "started_at": previous.get("started_at", _now()),
            "warnings": previous.get("warnings", {}),
        }
        self._write()

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self._status["rounds_completed"] = summary.round
        self._status["final_metrics"] = summary.global_metrics
        if summary.status == "rolled_back":
            self._status["rollbacks"] = self._status.get("rollbacks", 0) + 1
        if time.monotonic() - self._written_at >= self.min_interval_s:
            self._write()

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        warnings = self._status.setdefault("warnings", {})
        seen = warnings.get(code)
        warnings[code] = {
            "round": round,
            "message": message,
            "count": 1 if seen is None else seen["count"] + 1,
        }
        # A new kind of warning is shown at once; a repeated one waits for the next write.
        if seen is None and self._run_dir is not None:
            self._write()

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        self._status.update(
            {
                "status": result.status,
                "rounds_completed": result.rounds_completed,
                "final_metrics": result.final_metrics,
                "rollbacks": result.rollbacks,
                "error": result.error,
                "tracking_error": result.tracking_error,
            }
        )
        self._write()

    def _write(self) -> None:
        assert self._run_dir is not None
        self._status["updated_at"] = _now()
        path = self._run_dir.status
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._status, indent=1))
        os.replace(tmp, path)
        self._written_at = time.monotonic()


def _previous_status(run_dir: RunDir) -> dict[str, Any]:
    """What an earlier process of the run wrote (a resume carries it on); nothing if it
    is missing or damaged: the event log and the checkpoint hold the same facts."""
    try:
        data = json.loads(run_dir.status.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    wanted = {"final_metrics": dict, "rollbacks": int, "started_at": str, "warnings": dict}
    previous = {k: data[k] for k, kind in wanted.items() if isinstance(data.get(k), kind)}
    if "warnings" in previous:
        previous["warnings"] = {
            code: entry
            for code, entry in previous["warnings"].items()
            if isinstance(entry, dict) and isinstance(entry.get("count"), int)
        }
    return previous


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
