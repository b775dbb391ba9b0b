"""Pieces every selector shares: candidate hygiene, ranking, sampling, the logged base."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.errors import ResumeError
from fedpilot.ledger import LearnerOutcome
from fedpilot.ledger.participation import ParticipationLog
from fedpilot.selection._base import Selection, Selector
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


class LoggedSelector(Selector):
    """A Selector that keeps a :class:`ParticipationLog` and checkpoints it.

    Subclasses set ``kind`` (their spec name), extend :meth:`observe` (calling this one)
    when they learn more than the log holds, and put their own fields in
    :meth:`extra_state` / :meth:`load_extra_state`. Inside a run the selector reads the
    run's ledger (:meth:`use_ledger`), which the round loop updates and the checkpoint
    keeps; on its own it keeps a log of its own.
    """

    kind: str = ""

    def __init__(self) -> None:
        self.log = ParticipationLog()
        self._own_log = True

    def use_ledger(self, ledger: ParticipationLog) -> None:
        """Read ``ledger`` (kept up to date by its owner) instead of a log of its own."""
        self.log = ledger
        self._own_log = False

    def observe(self, *, ctx: RoundContext, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        if self._own_log:
            self.log.update(ctx.round, outcomes)

    def extra_state(self) -> dict[str, Any]:
        """The subclass's own checkpoint fields (JSON-serialisable)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned; called with ``{}`` on a fresh start."""
        del state

    def state_dict(self) -> dict[str, Any]:
        state = {"selector": self.kind, **self.extra_state()}
        if self._own_log:
            state["history"] = self.log.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:  # a checkpoint from before the selector kept state: start afresh
            if self._own_log:
                self.log.load_state_dict({})
            self.load_extra_state({})
            return
        found = state.get("selector")
        if found != self.kind:
            raise ResumeError(
                f"the checkpoint's selector state was written by selector {found!r}, "
                f"but `selection.name` is {self.kind!r}; resume with the spec the run "
                "started with"
            )
        if self._own_log:
            self.log.load_state_dict(state.get("history", {}))
        self.load_extra_state(state)
