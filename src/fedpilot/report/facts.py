"""What a run report shows, read from the run directory: the event log (leniently, through
the run store's readers), the status and the resolved spec."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedpilot.orchestrator.vocabulary import ROUND_ENDS, EventType
from fedpilot.rundir import RunDir
from fedpilot.tracking._lenient import (
    as_count,
    as_metrics,
    as_number,
    first_int,
    first_str,
    read_yaml,
)
from fedpilot.tracking.event_log import EventLogReader
from fedpilot.tracking.store import RunDetail, show_run

SYS_PREFIX = "sys."


@dataclass
class RoundFacts:
    """One round as its events tell it."""

    round: int
    status: str = "unknown"
    online: int | None = None
    selected: int = 0
    accepted: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """The global model's evaluation after the round (the stable one after a rollback)."""
    candidate: dict[str, float] = field(default_factory=dict)
    """The evaluation of the model the round produced (what the guard refused, if it did)."""
    reason: str | None = None


@dataclass
class RunFacts:
    """Everything the report plots and lists."""

    detail: RunDetail
    spec_text: str
    guard_metric: str | None
    rounds: list[RoundFacts]
    learner_metrics: dict[int, dict[str, dict[str, float]]]
    """round → learner → the metrics its accepted update reported."""
    outcomes: Counter[tuple[str, str]]
    """(outcome, reason category) → how many updates: rejected and failed ones."""
    reasons: dict[str, str]
    """Reason category → one full reason, as an example."""
    epsilon: list[tuple[int, float]]
    target_epsilon: float | None
    delta: float | None
    drift: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    system: dict[str, dict[str, list[float]]]
    """``sys.*`` metric → learner → its values over the rounds."""
    unreadable_lines: int = 0


def read_run(run_dir: Path) -> RunFacts:
    """The facts of ``run_dir`` (any file may be missing or damaged: what is readable)."""
    run_dir = run_dir.resolve()  # "." (from inside the run) has no name to look it up by
    files = RunDir(run_dir)
    detail = show_run(run_dir.parent, run_dir.name)
    try:
        spec_text = files.spec.read_text()
    except (OSError, UnicodeDecodeError):
        spec_text = ""
    rounds: dict[int, RoundFacts] = {}
    learner_metrics: dict[int, dict[str, dict[str, float]]] = defaultdict(dict)
    # By round: a round cut short and run again (a resume) counts once, as its last run.
    outcomes_by_round: dict[int | None, Counter[tuple[str, str]]] = defaultdict(Counter)
    reasons: dict[str, str] = {}
    epsilon: dict[int, float] = {}
    target: float | None = None
    delta: float | None = None
    drift: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    reader = EventLogReader(files.events)
    for event in reader:
        name = event.get("event")
        number = first_int(event.get("round"))
        if name == EventType.ROUND_STARTED and number is not None:
            learner_metrics.pop(number, None)
            outcomes_by_round.pop(number, None)
        elif name in ROUND_ENDS and number is not None:
            rounds[number] = _round(number, event)  # a re-run round replaces the cut one
        elif name == EventType.UPDATE_ACCEPTED and number is not None:
            learner_metrics[number][str(event.get("learner"))] = as_metrics(event.get("metrics"))
        elif name in (EventType.UPDATE_REJECTED, EventType.UPDATE_FAILED):
            reason = first_str(event.get("reason")) or "no reason given"
            category = reason_category(reason)
            outcome = "failed" if name == EventType.UPDATE_FAILED else "rejected"
            outcomes_by_round[number][outcome, category] += 1
            reasons.setdefault(category, reason)
        elif name == EventType.PRIVACY_SPENT and number is not None:
            spent = as_number(event.get("epsilon"))
            if spent is not None:
                epsilon[number] = spent
            target = as_number(event.get("target_epsilon"))
            delta = as_number(event.get("delta"))
        elif name == EventType.DRIFT_DETECTED:
            drift.append(event)
        elif name in (EventType.ALERT_FIRING, EventType.ALERT_RESOLVED):
            alerts.append(event)
    outcomes = sum(outcomes_by_round.values(), Counter[tuple[str, str]]())
    system: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for number in sorted(learner_metrics):
        for learner, metrics in learner_metrics[number].items():
            for key, value in metrics.items():
                if key.startswith(SYS_PREFIX):
                    system[key][learner].append(value)
    guard = _guard_metric(read_yaml(files.spec))
    ordered = [rounds[r] for r in sorted(rounds)]
    if guard is None or not any(guard in r.metrics for r in ordered):
        guard = detail.main_metric
    return RunFacts(
        detail=detail,
        spec_text=spec_text,
        guard_metric=guard,
        rounds=ordered,
        learner_metrics=dict(learner_metrics),
        outcomes=outcomes,
        reasons=reasons,
        epsilon=sorted(epsilon.items()),
        target_epsilon=target,
        delta=delta,
        drift=drift,
        alerts=alerts,
        system={k: dict(v) for k, v in system.items()},
        unreadable_lines=reader.skipped,
    )


def reason_category(reason: str) -> str:
    """A reason without its particulars: the part before the first ``:`` (``timeout``,
    ``undecodable update``) with its numbers as ``N`` (``update norm N is an outlier in
    its cohort``), shortened to its first words."""
    head = _NUMBER.sub("N", reason.split(":", 1)[0].strip())
    if len(head) > 60:
        head = " ".join(head[:60].split()[:-1]) + " …"
    return head or "no reason given"


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _round(number: int, event: dict[str, Any]) -> RoundFacts:
    participants = event.get("participants")
    accepted = event.get("accepted")
    return RoundFacts(
        round=number,
        status=first_str(event.get("status")) or "unknown",
        online=first_int(event.get("learners_online")),
        # A recovered round end (from a checkpoint) has counts, not lists.
        selected=len(participants) if isinstance(participants, list) else as_count(participants),
        accepted=len(accepted) if isinstance(accepted, list) else as_count(accepted),
        bytes_sent=as_count(event.get("bytes_sent")),
        bytes_received=as_count(event.get("bytes_received")),
        metrics=as_metrics(event.get("global_metrics")),
        candidate=as_metrics(event.get("candidate_metrics")),
        reason=first_str(event.get("reason")),
    )


def _guard_metric(spec: dict[str, Any]) -> str | None:
    guard = spec.get("guard")
    if isinstance(guard, dict) and guard.get("enabled", True):
        return first_str(guard.get("metric"))
    return None
