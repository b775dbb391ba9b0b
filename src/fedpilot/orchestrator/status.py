"""``<run_dir>/status.json``: where a run stands, for `fedpilot runs` and operators."""

from __future__ import annotations

import json
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedpilot.orchestrator.events import Callback, RoundSummary, RunInfo, RunResult
from fedpilot.types import RoundContext


class StatusFileCallback(Callback):
    """Rewrites ``status.json`` when the run starts and ends, and after a round when the
    last write is at least :attr:`min_interval_s` old: short rounds would otherwise spend
    more on the file system than on training (the event log has every round anyway)."""

    min_interval_s: float = 1.0

    def __init__(self) -> None:
        self._status: dict[str, Any] = {}
        self._path: Path | None = None
        self._written_at = -math.inf

    def on_run_start(self, *, run: RunInfo) -> None:
        self._path = run.run_dir / "status.json"
        previous: dict[str, Any] = {}
        if self._path.is_file():
            previous = json.loads(self._path.read_text())
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
        }
        self._write()

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        self._status["rounds_completed"] = summary.round
        self._status["final_metrics"] = summary.global_metrics
        if summary.status == "rolled_back":
            self._status["rollbacks"] = self._status.get("rollbacks", 0) + 1
        if time.monotonic() - self._written_at >= self.min_interval_s:
            self._write()

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        self._status.update(
            status=result.status,
            rounds_completed=result.rounds_completed,
            final_metrics=result.final_metrics,
            rollbacks=result.rollbacks,
            error=result.error,
        )
        self._write()

    def _write(self) -> None:
        assert self._path is not None
        self._status["updated_at"] = _now()
        tmp = self._path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._status, indent=1))
        os.replace(tmp, self._path)
        self._written_at = time.monotonic()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
