"""Queries over a runs directory: which runs exist, how far they got, how each round went.

A run directory (:class:`~fedpilot.rundir.RunDir`) may hold, all optional:

- the status file: the run's summary, rewritten as the run goes
  (:class:`~fedpilot.tracking.status_file.StatusFile`); the first source for every field it has.
- the event log (:class:`~fedpilot.tracking.event_log.EventLogCallback`): the per-round
  history, the warnings, and the fallback when the status file is missing.
- the resolved spec (name, planned rounds, the guard's metric).
- the MLflow run id (:class:`~fedpilot.tracking.MLflowCallback`).
- the lock of the process running the run (:class:`~fedpilot.rundir.RunLock`): a run
  whose status says ``running`` while nobody holds its lock died without recording its
  end (SIGKILL, the OOM killer, a lost machine). It is shown ``interrupted``, at its
  newest intact checkpoint, which is where a resume continues.

Readers never fail on a damaged file: an event line that is not a JSON object (torn,
binary) is skipped and counted, and an unreadable status file or spec counts as absent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedpilot.errors import ResumeError, UserError
from fedpilot.orchestrator.vocabulary import ROUND_ENDS, EventType
from fedpilot.rundir import RunDir, lock_holder
from fedpilot.tracking._lenient import (
    as_count,
    as_metrics,
    as_number,
    as_time,
    first_int,
    first_str,
    read_json,
    read_text,
    read_yaml,
)
from fedpilot.tracking.event_log import EventLogReader, to_json

_PREFERRED_METRICS = ("accuracy", "loss")


@dataclass(frozen=True)
class RunRecord:
    """One run as ``fedpilot runs list`` shows it."""

    run_id: str
    name: str
    status: str
    """``running``, ``completed``, ``stopped``, ``interrupted``, ``failed`` or ``unknown``."""
    rounds_completed: int
    total_rounds: int | None
    final_metrics: dict[str, float]
    rollbacks: int
    started_at: datetime | None
    updated_at: datetime | None
    run_dir: Path
    mlflow_run_id: str | None
    main_metric: str | None
    """The metric that sums the run up: the guard's, else accuracy, else loss."""
    error: str | None = None
    """Why the run failed, was stopped or interrupted."""

    @property
    def main_value(self) -> float | None:
        """The final value of :attr:`main_metric`, if known."""
        return None if self.main_metric is None else self.final_metrics.get(self.main_metric)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able data (``--json`` output)."""
        data: dict[str, Any] = to_json(self)
        return data


@dataclass(frozen=True)
class RoundRow:
    """One round of a run, from its ``RoundCompleted`` or ``RoundFailed`` event."""

    round: int
    status: str
    """``completed``, ``rolled_back`` or ``failed``."""
    participants: int
    accepted: int
    rejected: int
    failed: int
    train_loss: float | None
    duration: float | None
    metrics: dict[str, float]
    """Evaluation of the global model after the round."""
    reason: str | None = None


@dataclass(frozen=True)
class RunWarning:
    """A ``Warning`` event: something the run worked around."""

    round: int | None
    code: str
    message: str


@dataclass(frozen=True)
class RunDetail(RunRecord):
    """One run in full, as ``fedpilot runs show`` shows it."""

    spec_hash: str | None = None
    rounds: tuple[RoundRow, ...] = field(default_factory=tuple)
    warnings: tuple[RunWarning, ...] = field(default_factory=tuple)
    events: dict[EventType, int] = field(default_factory=dict)
    """How many events of each type the event log holds (all processes of the run)."""
    unreadable_event_lines: int = 0
    """Lines of the event log that are not a JSON object (torn by a crash, damaged)."""


def list_runs(output_dir: str | Path = "fedpilot-runs") -> list[RunRecord]:
    """Every run under ``output_dir``, newest first.

    Args:
        output_dir: The runs directory (the spec's ``output_dir``).

    Returns:
        One record per run folder; an empty list when the folder does not exist.
    """
    records = [_read_record(path) for path in _run_dirs(Path(output_dir))]
    oldest = datetime.min.replace(tzinfo=UTC)
    records.sort(key=lambda r: r.run_id)
    records.sort(key=lambda r: r.started_at or oldest, reverse=True)
    return records


def show_run(output_dir: str | Path, run_id_or_prefix: str) -> RunDetail:
    """One run in full, found by its id or an unambiguous prefix of it.

    Args:
        output_dir: The runs directory.
        run_id_or_prefix: A run id, or the start of exactly one run id.

    Returns:
        The run's summary and its per-round history.

    Raises:
        UserError: No run, or more than one run, matches.
    """
    run_dir = RunDir(find_run_dir(output_dir, run_id_or_prefix))
    facts = _scan_events(run_dir.events)
    status = read_json(run_dir.status)
    return RunDetail(
        **_record_fields(run_dir, status, facts),
        spec_hash=facts.spec_hash,
        rounds=tuple(facts.rounds[r] for r in sorted(facts.rounds)),
        warnings=tuple(facts.warnings),
        events=dict(facts.counts),
        unreadable_event_lines=facts.unreadable_lines,
    )


def find_run_dir(output_dir: str | Path, run_id_or_prefix: str) -> Path:
    """The folder of the run named by its id or an unambiguous prefix of it.

    Args:
        output_dir: The runs directory.
        run_id_or_prefix: A run id, or the start of exactly one run id.

    Returns:
        The run's folder (an exact id wins over longer ids it is a prefix of).

    Raises:
        UserError: No run, or more than one run, matches.
    """
    root = Path(output_dir)
    wanted = run_id_or_prefix.strip()
    dirs = _run_dirs(root)
    exact = [d for d in dirs if d.name == wanted]
    if exact:
        return exact[0]
    matches = [d for d in dirs if wanted and d.name.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        where = f"{str(root)!r}" if root.is_dir() else f"{str(root)!r} (no such directory)"
        raise UserError(
            f"no run matches {wanted!r} in {where}; `fedpilot runs list --output-dir {root}` "
            "shows the runs there"
        )
    shown = ", ".join(d.name for d in matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise UserError(
        f"run id prefix {wanted!r} is ambiguous: it matches {len(matches)} runs ({shown}); "
        "give more characters"
    )


# ------------------------------------------------------------------------ reading


def _run_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        d for d in root.iterdir() if d.is_dir() and any(m.is_file() for m in RunDir(d).markers)
    )


def _read_record(path: Path) -> RunRecord:
    run_dir = RunDir(path)
    status = read_json(run_dir.status)
    # Without status.json the event log is the only record of progress: read it then.
    facts = _EventFacts() if status else _scan_events(run_dir.events)
    return RunRecord(**_record_fields(run_dir, status, facts))


def _record_fields(
    run_dir: RunDir, status: Mapping[str, Any], facts: _EventFacts
) -> dict[str, Any]:
    """The fields of a :class:`RunRecord`: status.json first, then events, then the spec."""
    spec = read_yaml(run_dir.spec)
    final_metrics = as_metrics(status.get("final_metrics"))
    if not final_metrics:
        final_metrics = facts.final_metrics
    guard = spec.get("guard")
    preferred = guard.get("metric") if isinstance(guard, dict) else None
    fields: dict[str, Any] = dict(
        run_id=run_dir.run_id,
        name=first_str(status.get("name"), spec.get("name"), facts.name) or run_dir.run_id,
        status=first_str(status.get("status"), facts.status) or "unknown",
        rounds_completed=first_int(status.get("rounds_completed"), facts.rounds_completed) or 0,
        total_rounds=first_int(status.get("total_rounds"), facts.total_rounds, spec.get("rounds")),
        final_metrics=final_metrics,
        rollbacks=first_int(status.get("rollbacks"), facts.rollbacks) or 0,
        started_at=as_time(status.get("started_at")) or facts.started_at,
        updated_at=as_time(status.get("updated_at")) or facts.updated_at,
        run_dir=run_dir.path,
        mlflow_run_id=read_text(run_dir.mlflow_run_id),
        main_metric=None,
        error=first_str(status.get("error"), facts.error),
    )
    if fields["status"] == "running" and _died(run_dir):
        fields.update(_at_last_checkpoint(run_dir))
    fields["main_metric"] = _pick_main_metric(preferred, fields["final_metrics"])
    return fields


def _died(run_dir: RunDir) -> bool:
    """True if the process running the run ended without saying so: it held the lock
    (run directories made before runs were locked have no lock file), and nobody does."""
    return run_dir.lock.is_file() and lock_holder(run_dir.path) is None


def _at_last_checkpoint(run_dir: RunDir) -> dict[str, Any]:
    """A dead run's fields: interrupted, where its newest intact checkpoint has it."""
    fields: dict[str, Any] = {
        "status": "interrupted",
        "error": "its process ended without recording the end (killed?); "
        "resume from the last checkpoint",
    }
    # Imported here: numpy, for the few runs that need it.
    from fedpilot.orchestrator.checkpoint import restore_checkpoint

    try:
        state = restore_checkpoint(run_dir.path).state
    except ResumeError:
        return fields  # no round was checkpointed: the status file's counts stand
    return {
        **fields,
        "rounds_completed": state.round,
        "final_metrics": dict(state.metrics),
        "rollbacks": state.rollbacks,
    }


@dataclass
class _EventFacts:
    """What the event log says about a run (later events overwrite earlier ones)."""

    name: str | None = None
    status: str | None = None
    rounds_completed: int | None = None
    total_rounds: int | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    rollbacks: int | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    spec_hash: str | None = None
    error: str | None = None
    rounds: dict[int, RoundRow] = field(default_factory=dict)
    warnings: list[RunWarning] = field(default_factory=list)
    counts: Counter[EventType] = field(default_factory=Counter)
    unreadable_lines: int = 0


def _scan_events(path: Path) -> _EventFacts:
    facts = _EventFacts()
    reader = EventLogReader(path)
    for event in reader:
        name = event.get("event")
        if not isinstance(name, str) or name not in _EVENT_NAMES:
            continue  # not an event this version knows (a newer writer's)
        kind = EventType(name)
        facts.counts[kind] += 1
        facts.updated_at = as_time(event.get("time")) or facts.updated_at
        if kind is EventType.RUN_STARTED:
            # A (re)start: what an earlier RunFinished said no longer holds.
            facts.started_at = facts.started_at or as_time(event.get("time"))
            facts.name = first_str(event.get("name"), facts.name)
            facts.spec_hash = first_str(event.get("spec_hash"), facts.spec_hash)
            facts.total_rounds = first_int(event.get("total_rounds"), facts.total_rounds)
            facts.status, facts.error = "running", None
            facts.rounds_completed, facts.rollbacks, facts.final_metrics = None, None, {}
        elif kind in ROUND_ENDS:
            row = _round_row(event)
            if row is not None:
                # A round re-run after a resume replaces the one that was cut short.
                facts.rounds[row.round] = row
                facts.total_rounds = first_int(event.get("total_rounds"), facts.total_rounds)
        elif kind is EventType.WARNING:
            facts.warnings.append(
                RunWarning(
                    round=first_int(event.get("round")),
                    code=first_str(event.get("code")) or "",
                    message=first_str(event.get("message")) or "",
                )
            )
        elif kind is EventType.RUN_FINISHED:
            facts.status = first_str(event.get("status"), facts.status)
            facts.rounds_completed = first_int(event.get("rounds_completed"))
            facts.rollbacks = first_int(event.get("rollbacks"))
            facts.final_metrics = as_metrics(event.get("final_metrics"))
            facts.error = first_str(event.get("error"))
    if facts.rounds:
        last = facts.rounds[max(facts.rounds)]
        if facts.rounds_completed is None:
            facts.rounds_completed = last.round
        if not facts.final_metrics:
            facts.final_metrics = dict(last.metrics)
        if facts.rollbacks is None:
            facts.rollbacks = sum(r.status == "rolled_back" for r in facts.rounds.values())
    facts.unreadable_lines = reader.skipped
    return facts


_EVENT_NAMES = frozenset(EventType)


def _round_row(event: Mapping[str, Any]) -> RoundRow | None:
    number = first_int(event.get("round"))
    if number is None:
        return None
    return RoundRow(
        round=number,
        status=first_str(event.get("status")) or "unknown",
        participants=as_count(event.get("participants")),
        accepted=as_count(event.get("accepted")),
        rejected=as_count(event.get("rejected")),
        failed=as_count(event.get("failed")),
        train_loss=as_number(event.get("train_loss")),
        duration=as_number(event.get("duration")),
        metrics=as_metrics(event.get("global_metrics")),
        reason=first_str(event.get("reason")),
    )


def _pick_main_metric(preferred: object, metrics: Mapping[str, float]) -> str | None:
    for name in (preferred, *_PREFERRED_METRICS):
        if isinstance(name, str) and name in metrics:
            return name
    return min(metrics) if metrics else None
