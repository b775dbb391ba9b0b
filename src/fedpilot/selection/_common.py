"""Pieces every selector shares: candidate hygiene, ranking, sampling, participation log."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.errors import ResumeError
from fedpilot.selection._base import LearnerOutcome, Selection, Selector
from fedpilot.types import LearnerId, LearnerInfo, RoundContext


def unique(candidates: Iterable[LearnerInfo]) -> list[LearnerInfo]:
    """The candidates without repeated ids (the first occurrence wins), order kept."""
    seen: set[LearnerId] = set()
    kept = []
    for info in candidates:
        if info.id not in seen:
            seen.add(info.id)
            kept.append(info)
    return kept


def check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"`size` must be >= 0, got size={size}")


def available_pool(candidates: Iterable[LearnerInfo], size: int) -> tuple[list[LearnerInfo], int]:
    """The distinct candidates available now, and how many of them to pick."""
    check_size(size)
    pool = [info for info in unique(candidates) if info.available]
    return pool, min(size, len(pool))


def in_candidate_order(candidates: Sequence[LearnerInfo], reasons: Mapping[str, str]) -> Selection:
    """The Selection of the ids in ``reasons``, listed in candidate order."""
    chosen = tuple(info.id for info in candidates if info.id in reasons)
    return Selection(chosen=chosen, reasons={learner: reasons[learner] for learner in chosen})


def rank_descending(keys: Sequence[float], rng: np.random.Generator) -> list[int]:
    """Indices of ``keys`` from largest to smallest; ties are broken by ``rng``.

    Breaking ties at random (not by candidate order) keeps learners listed first from
    being favoured whenever scores are equal, e.g. before anything was observed.
    """
    if not keys:
        return []
    tiebreak = rng.random(len(keys))
    order = np.lexsort((tiebreak, -np.asarray(keys, dtype=float)))
    return [int(i) for i in order]


def weighted_sample(weights: Sequence[float], k: int, rng: np.random.Generator) -> list[int]:
    """``k`` distinct indices drawn with probability proportional to ``weights``.

    Zero weights are drawn only once every positive one is taken (uniformly among them),
    so the draw never fails for lack of positive mass.
    """
    w: npt.NDArray[np.float64] = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    w[~np.isfinite(w)] = 0.0
    k = min(k, len(w))
    positive = np.flatnonzero(w > 0)
    if len(positive) >= k:
        if k == 0:
            return []
        return [int(i) for i in rng.choice(len(w), size=k, replace=False, p=w / w.sum())]
    zero = np.flatnonzero(w <= 0)
    rest = rng.choice(zero, size=k - len(positive), replace=False)
    return [int(i) for i in positive] + [int(i) for i in rest]


def finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class LearnerRecord:
    """What is known about one learner from the rounds it took part in."""

    tried: int = 0
    """Rounds with an outcome (accepted, rejected or failed)."""
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    streak: int = 0
    """Consecutive rounds without an accepted update, up to now."""
    last_round: int = 0
    """The last round it was chosen in (0: never)."""
    loss: float | None = None
    """The training loss of its last accepted update."""
    examples: int = 0
    """Examples of its last accepted update."""
    duration: float | None = None
    """Seconds it took the last time a duration was reported (for a failure without one:
    the round's deadline)."""


class ParticipationLog:
    """Per-learner history of outcomes; every selector keeps one in its checkpoint."""

    def __init__(self) -> None:
        self.records: dict[LearnerId, LearnerRecord] = {}

    def get(self, learner: LearnerId) -> LearnerRecord | None:
        return self.records.get(learner)

    def tried(self, learner: LearnerId) -> bool:
        record = self.records.get(learner)
        return record is not None and record.tried > 0

    def update(self, ctx: RoundContext, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        # Sorted so the checkpoint's key order does not depend on reply arrival order.
        for learner in sorted(outcomes):
            outcome = outcomes[learner]
            record = self.records.setdefault(learner, LearnerRecord())
            record.tried += 1
            record.last_round = max(record.last_round, ctx.round)
            duration = finite_or_none(outcome.duration)
            if duration is None and outcome.status == "failed":
                # A learner that delivered nothing used the whole deadline as far as anyone
                # knows: stragglers and dropouts then look slow to duration-aware selectors.
                duration = finite_or_none(outcome.deadline)
            if duration is not None and duration >= 0:
                record.duration = duration
            if outcome.status == "accepted":
                record.accepted += 1
                record.streak = 0
                record.examples = max(0, int(outcome.num_examples))
                loss = finite_or_none(outcome.loss)
                if loss is not None:
                    record.loss = loss
            else:
                # A rejected update's loss is not trusted: it comes with the update that
                # failed validation.
                record.streak += 1
                if outcome.status == "rejected":
                    record.rejected += 1
                else:
                    record.failed += 1

    def state_dict(self) -> dict[str, Any]:
        # vars() rather than asdict(): this runs every round, and asdict deep-copies.
        return {learner: dict(vars(record)) for learner, record in self.records.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.records = {
                str(learner): LearnerRecord(**fields) for learner, fields in state.items()
            }
        except TypeError as exc:
            raise ResumeError(
                f"selector checkpoint has a malformed learner history: {exc}"
            ) from exc


class LoggedSelector(Selector):
    """A Selector that keeps a :class:`ParticipationLog` and checkpoints it.

    Subclasses set ``kind`` (their spec name), extend :meth:`observe` when they learn
    more than the log holds, and put their own fields in :meth:`extra_state` /
    :meth:`load_extra_state`.
    """

    kind: str = ""

    def __init__(self) -> None:
        self.log = ParticipationLog()

    def observe(self, *, ctx: RoundContext, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        self.log.update(ctx, outcomes)

    def extra_state(self) -> dict[str, Any]:
        """The subclass's own checkpoint fields (JSON-serialisable)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned; called with ``{}`` on a fresh start."""
        del state

    def state_dict(self) -> dict[str, Any]:
        return {"selector": self.kind, "history": self.log.state_dict(), **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:  # a checkpoint from before the selector kept state: start afresh
            self.log = ParticipationLog()
            self.load_extra_state({})
            return
        found = state.get("selector")
        if found != self.kind:
            raise ResumeError(
                f"the checkpoint's selector state was written by selector {found!r}, "
                f"but `selection.name` is {self.kind!r}; resume with the spec the run "
                "started with"
            )
        self.log.load_state_dict(state.get("history", {}))
        self.load_extra_state(state)
