"""The audit trail: every hook of a run as one JSON object a line in ``events.jsonl``.

Each line is ``{"event": <name>, "time": <ISO 8601 UTC>, "round": <n>, ...fields}``. The
fields come from the hook's dataclasses, turned into JSON generically, so a field added to
an event dataclass shows up in the log without touching this module. The file is flushed
at every round boundary (and on every event outside a round), in step with the round's
checkpoint: a crash loses at most the update lines of a round that had not completed, and
a resumed run redoes that round. Update lines wait in memory until then: per-update
writes, between one learner's training and the next, cost more than training a small
model. Lines are encoded by orjson (a round of a small model writes as many lines as it
trains learners; the standard library's encoder took longer than the training).
:class:`EventLogReader` reads the log back, skipping (and counting) whatever is not one
JSON object a line: a torn last line, binary bytes, a damaged line.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from fedpilot.orchestrator.events import (
    Alert,
    Callback,
    DriftFinding,
    PrivacyLoss,
    RoundSummary,
    RunInfo,
    RunResult,
    UpdateVerdict,
)
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.rundir import RunDir
from fedpilot.types import FleetNotice, LearnerId, Metrics, RoundContext

_logger = logging.getLogger(__name__)

# Fields too large or not meaningful in a log line; everything else is written as is.
# The weights are the model itself, the history repeats the RoundCompleted lines and a
# round's learner metrics repeat its update lines.
_OMITTED_FIELDS: dict[type, frozenset[str]] = {
    RunInfo: frozenset({"spec", "task", "history"}),
    RunResult: frozenset({"weights", "history"}),
    RoundContext: frozenset({"run_id"}),
    RoundSummary: frozenset({"learner_metrics"}),
}


def to_json(value: Any) -> Any:
    """Turn a hook argument into JSON-able data, generically.

    Dataclasses become mappings of their fields (shallowly, unlike
    :func:`dataclasses.asdict`, which would deep-copy model weights and tasks only to
    drop them), numpy scalars and arrays become Python numbers and lists, paths become
    strings and non-finite floats become ``null`` (strict JSON has no NaN).

    Args:
        value: Any value found in an event.

    Returns:
        The same information made of dicts, lists, strings, numbers, booleans and None.
    """
    # Most values are plain scalars: test for them first (this runs per field per update).
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict or isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_json(getattr(value, name)) for name in _field_names(kind)}
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(kind)
    if names is None:
        omitted = _OMITTED_FIELDS.get(kind, frozenset())
        names = tuple(f.name for f in dataclasses.fields(kind) if f.name not in omitted)
        _FIELD_NAMES[kind] = names
    return names


def _iso(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) as ISO 8601 UTC with milliseconds."""
    second = int(timestamp)
    millis = int((timestamp - second) * 1000)
    return f"{_iso_second(second)}.{millis:03d}+00:00"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    # Events come in bursts (a round's updates are written together): the date part is
    # the same for most of them, and formatting it is most of the cost of a timestamp.
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")


class EventLogCallback(Callback):
    """Appends every hook of a run to ``<run_dir>/events.jsonl``.

    The file is opened in append mode, so a resumed run continues the same trail. Writing
    is thread-safe. An I/O failure logs a warning and never stops the federation.

    Each hook writes one :class:`~fedpilot.orchestrator.vocabulary.EventType`: a
    rolled-back round is a ``RoundCompleted`` with ``status: "rolled_back"``, and
    ``on_warning`` writes a ``Warning`` with its ``code`` and ``message``.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        """The round's update lines so far, written with the next other event."""

    @property
    def path(self) -> Path | None:
        """The file being written, once the run has started."""
        return self._path

    # -- hooks -----------------------------------------------------------------------

    def on_run_start(self, *, run: RunInfo) -> None:
        """Opens the log and writes ``RunStarted``."""
        self.close()
        path = RunDir(run.run_dir).events
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")
            self._path = path
            if not _ends_a_line(path):
                # A process killed mid-line left a torn line: the first event of this one
                # must not be glued to it (readers skip the torn line alone).
                self._file.write(b"\n")
        except OSError as exc:
            _logger.warning("cannot open the event log %s (%s); events are not recorded", path, exc)
            return
        self._write_missing_rounds(run)
        self._write(
            EventType.RUN_STARTED,
            run,
            name=run.spec.name,
            spec_hash=run.spec.digest(),
            total_rounds=run.spec.rounds,
            task=None if run.task is None else type(run.task).__qualname__,
        )

    def on_round_start(self, *, ctx: RoundContext, participants: tuple[LearnerId, ...]) -> None:
        """Writes ``RoundStarted`` with the chosen learners."""
        self._write(EventType.ROUND_STARTED, ctx, participants=participants)

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        """Writes ``UpdateAccepted``, ``UpdateRejected`` or ``UpdateFailed``."""
        # Plain strings picked by hand: this runs for every update.
        if verdict.accepted:
            event = _UPDATE_ACCEPTED
        elif verdict.failed:
            event = _UPDATE_FAILED
        else:
            event = _UPDATE_REJECTED
        line = _line(event, verdict, {"round": ctx.round, "learner": learner})
        with self._lock:
            self._pending.append(line)

    def on_model_rolled_back(
        self, *, ctx: RoundContext, reason: str, candidate: Metrics, stable: Metrics
    ) -> None:
        """Writes ``ModelRolledBack`` with the guard's reason and both evaluations."""
        self._write(
            EventType.MODEL_ROLLED_BACK,
            None,
            round=ctx.round,
            reason=reason,
            candidate=candidate,
            stable=stable,
        )

    def on_fleet_notice(self, *, round: int, notice: FleetNotice) -> None:
        """Writes ``LearnerJoined``, ``LearnerLeft`` or ``LearnerRefused``."""
        self._write(EventType.of_notice(notice.kind), notice, round=round)

    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        """Writes ``RoundCompleted`` (completed or rolled back) or ``RoundFailed``."""
        self._write(EventType.of_round(summary.status), summary, total_rounds=ctx.total_rounds)

    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        """Writes ``PrivacySpent`` with ε, δ and the rounds composed."""
        self._write(EventType.PRIVACY_SPENT, spent, round=round)

    def on_secure_aggregation_failed(self, *, round: int, reason: str) -> None:
        """Writes ``SecureAggregationFailed`` with why."""
        self._write(EventType.SECURE_AGGREGATION_FAILED, None, round=round, reason=reason)

    def on_drift(self, *, round: int, finding: DriftFinding) -> None:
        """Writes ``DriftDetected`` with the finding's fields."""
        self._write(EventType.DRIFT_DETECTED, finding, round=round)

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        """Writes ``Warning`` with its code and message."""
        self._write(EventType.WARNING, None, round=round, code=code, message=message)

    def on_alert(self, *, round: int, alert: Alert) -> None:
        """Writes ``AlertFiring`` or ``AlertResolved`` with the alert's fields."""
        event = EventType.ALERT_FIRING if alert.state == "firing" else EventType.ALERT_RESOLVED
        self._write(event, alert, round=round)

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        """Writes ``RunFinished`` (with ``error``: why it failed, was stopped or
        interrupted) and closes the log."""
        self._write(EventType.RUN_FINISHED, result, run_id=run.run_id)
        self.close()

    def _write_missing_rounds(self, run: RunInfo) -> None:
        """On resume: the round ends of the checkpoint that the log lacks (a signal came
        between a round's checkpoint and its line), from the checkpoint's records, marked
        ``recovered``."""
        if not run.history or self._path is None:
            return
        try:
            logged = _logged_rounds(self._path)
        except OSError as exc:
            _logger.warning("cannot read the event log %s (%s)", self._path, exc)
            return
        for record in run.history:
            if record.round in logged:
                continue
            fields = {k: v for k, v in vars(record).items() if k != "metrics"}
            fields.update(
                global_metrics=record.metrics, total_rounds=run.spec.rounds, recovered=True
            )
            self._write(EventType.of_round(record.status), None, **fields)

    # -- writing ---------------------------------------------------------------------

    def close(self) -> None:
        """Closes the file (a later ``on_run_start`` opens it again)."""
        with self._lock:
            if self._file is not None:
                self._append(b"", "update events")
                try:
                    self._file.close()
                except OSError as exc:
                    _logger.warning("closing the event log failed: %s", exc)
                self._file = None
            self._pending = []

    def _write(self, event: str, payload: object, **fields: Any) -> None:
        # Any other event follows the round's updates so far, and is flushed with them.
        line = _line(event, payload, fields)
        with self._lock:
            if self._file is not None:
                self._append(line, event)
            self._pending = []

    def _append(self, line: bytes, what: str) -> None:
        assert self._file is not None
        try:
            self._file.write(b"".join(self._pending) + line)
            self._file.flush()
        except OSError as exc:
            _logger.warning("writing %s to the event log failed: %s", what, exc)


def append_event(path: Path, event: EventType, **fields: Any) -> bool:
    """Appends one event to the log at ``path`` from outside a run (the model registry's,
    after the run ended); False, with a warning, when it cannot be written."""
    line = _line(event, None, fields)
    try:
        with path.open("ab") as handle:
            if not _ends_a_line(path):
                handle.write(b"\n")
            handle.write(line)
    except OSError as exc:
        _logger.warning("cannot append %s to the event log %s (%s)", event, path, exc)
        return False
    return True


def _ends_a_line(path: Path) -> bool:
    """True if ``path`` is empty or its last byte ends a line."""
    with path.open("rb") as handle:
        if handle.seek(0, 2) == 0:
            return True
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


class EventLogReader:
    """The events of an ``events.jsonl``, one mapping each, in order; a line that is not
    one JSON object (torn by a crash, binary bytes, a damaged line) is skipped and counted.
    A missing or unreadable file has no events.

    Iterate it once; :attr:`skipped` then says how many non-empty lines were skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            handle = self.path.open("rb")
        except OSError:
            return
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                # ValueError: not JSON, not UTF-8 (UnicodeDecodeError), an integer too long
                # to read; RecursionError: nested too deep.
                except (ValueError, RecursionError):
                    event = None
                if isinstance(event, dict):
                    yield event
                else:
                    self.skipped += 1
                    _logger.debug("skipping unreadable line %d of %s", number, self.path)


def _logged_rounds(path: Path) -> set[int]:
    """The rounds whose end ``path`` has (damaged lines are skipped)."""
    ends = {EventType.ROUND_COMPLETED.value, EventType.ROUND_FAILED.value}
    rounds: set[int] = set()
    with path.open("rb") as handle:
        for line in handle:
            if b"Round" not in line:
                continue  # most lines are updates: not worth parsing
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") in ends:
                number = event.get("round")
                if isinstance(number, int):
                    rounds.add(number)
    return rounds


def _line(event: str, payload: object, fields: dict[str, Any]) -> bytes:
    """One event as a JSON line (empty, with a warning, if it cannot be written): event,
    time and round first, then the payload's fields, then ``fields``."""
    # The round's slot is taken first so that it comes third, wherever it is found.
    record: dict[str, Any] = {"event": event, "time": _iso(time.time()), "round": _NO_ROUND}
    if payload is not None:
        record.update(_fields(payload))
    record.update(fields)
    if record["round"] is _NO_ROUND:
        del record["round"]
    return _encode(record, event)


_NO_ROUND = object()
_UPDATE_ACCEPTED = EventType.UPDATE_ACCEPTED.value
_UPDATE_REJECTED = EventType.UPDATE_REJECTED.value
_UPDATE_FAILED = EventType.UPDATE_FAILED.value


def _encode(record: dict[str, Any], event: str) -> bytes:
    try:
        return orjson.dumps(record, default=to_json, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        pass  # e.g. an integer beyond 64 bits, which the standard library writes
    try:
        return (json.dumps(to_json(record), allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as exc:
        _logger.warning("event %s cannot be written as JSON: %s", event, exc)
        return b""


# orjson writes NaN and inf as null, like to_json, and nested dataclasses as mappings of
# their fields (the fields omitted from logs belong to hook payloads, which _fields
# unpacks); what it cannot write itself (sets, paths, odd numpy arrays) goes through
# to_json.
_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fields(payload: object) -> Iterable[tuple[str, Any]]:
    """A hook's payload as (name, value) pairs: a dataclass's fields (not converted), or
    ``value``."""
    reader = _FIELD_READERS.get(type(payload))
    if reader is None:
        if not dataclasses.is_dataclass(payload) or isinstance(payload, type):
            return (("value", to_json(payload)),)
        reader = _FIELD_READERS[type(payload)] = _field_reader(type(payload))
    return reader(payload)


# One C-level attrgetter per payload type: a line is written for every update, and
# reading the fields one getattr at a time was a third of the cost of writing it.
_FIELD_READERS: dict[type, Callable[[Any], Iterable[tuple[str, Any]]]] = {}


def _field_reader(kind: type) -> Callable[[Any], Iterable[tuple[str, Any]]]:
    names = _field_names(kind)
    if not names:
        return lambda payload: ()
    values = operator.attrgetter(*names)
    if len(names) == 1:
        return lambda payload: ((names[0], values(payload)),)
    return lambda payload: zip(names, values(payload), strict=True)
