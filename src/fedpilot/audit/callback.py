"""The run's audit trail as a callback: who took part, what became of each update, and
the run's stops, chained into ``audit.jsonl`` and signed at the end of every round.

Update lines wait in memory until the round's next other event, like the event log's
(a write per update would cost more than a small model's training); a crash loses at most
the update lines of a round that had not completed, which the resumed run redoes.
"""

from __future__ import annotations

import logging
from typing import Any

from fedpilot.audit.chain import AuditLog
from fedpilot.errors import UserError
from fedpilot.orchestrator.events import (
    PRIVACY_BUDGET_SPENT,
    Callback,
    RoundSummary,
    RunInfo,
    RunResult,
    UpdateVerdict,
)
from fedpilot.types import FleetNotice, LearnerId, Metrics, RoundContext

_logger = logging.getLogger(__name__)


class AuditLogCallback(Callback):
    """Writes the audit log of the run (see :mod:`fedpilot.audit`).

    Recorded: each process's start (``writer_started``: run, first round, spec hash), every
    update (``update``: learner, round, ``outcome`` accepted / rejected / failed, reason,
    ``digest`` of its arrays as received, examples), learners joining, leaving and refused,
    guard rollbacks, privacy budget stops, each round's end (then a signature) and the
    run's end (then a signature). A write that fails is logged, reported as this
    observer's :attr:`failure` (the run's ``tracking_error``) and never stops the run.
    """

    def __init__(self) -> None:
        self._log: AuditLog | None = None
        self._pending: list[dict[str, Any]] = []
        self._failure: str | None = None

    @property
    def failure(self) -> str | None:
        return self._failure

    def on_run_start(self, *, run: RunInfo) -> None:
        try:
            self._log = AuditLog(run.run_dir)
        except UserError as exc:
            self._fail(str(exc))
            return
        self._pending = []
        self._record(
            {
                "kind": "writer_started",
                "run_id": run.run_id,
                "start_round": run.start_round,
                "spec_hash": run.spec.digest(),
                "mode": run.mode,
            },
            sign=True,
        )

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        outcome = "accepted" if verdict.accepted else "failed" if verdict.failed else "rejected"
        self._pending.append(
            {
                "kind": "update",
                "round": ctx.round,
                "learner": learner,
                "outcome": outcome,
                "reason": verdict.reason,
                "digest": verdict.digest,
                "num_examples": verdict.num_examples,
            }
        )

    def on_fleet_notice(self, *, round: int, notice: FleetNotice) -> None:
        kind = {"joined": "learner_joined", "left": "learner_left", "refused": "learner_refused"}
        entry = {"kind": kind[notice.kind], "round": round, "learner": notice.learner}
        self._record({**entry, "detail": notice.detail})

    def on_model_rolled_back(
        self, *, ctx: RoundContext, reason: str, candidate: Metrics, stable: Metrics
    ) -> None:
        self._record({"kind": "model_rolled_back", "round": ctx.round, "reason": reason})

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        if code == PRIVACY_BUDGET_SPENT:
            self._record({"kind": "privacy_budget_stop", "round": round, "reason": message})

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        entry = {
            "kind": "round_ended",
            "round": summary.round,
            "status": summary.status,
            "accepted": len(summary.accepted),
            "rejected": len(summary.rejected),
            "failed": len(summary.failed),
            "reason": summary.reason,
        }
        self._record(entry, sign=True)

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        entry = {
            "kind": "run_finished",
            "status": result.status,
            "rounds_completed": result.rounds_completed,
            "reason": result.error,
        }
        self._record(entry, sign=True)
        self._log = None

    def _record(self, entry: dict[str, Any], *, sign: bool = False) -> None:
        """Writes the pending update lines, then ``entry``, then a signature if ``sign``."""
        self._pending.append(entry)
        entries, self._pending = self._pending, []
        if self._log is None:
            return
        try:
            self._log.write(entries, sign=sign)
        except OSError as exc:
            self._fail(f"cannot write {self._log.path}: {exc}")

    def _fail(self, reason: str) -> None:
        _logger.warning("audit log: %s; the run goes on without it", reason)
        if self._failure is None:
            self._failure = f"audit log: {reason}"
        self._log = None


__all__ = ["AuditLogCallback"]
