"""Oort (Lai et al., OSDI'21): learners whose data helps most *and* who finish in time.

Each tried learner gets a utility, exploited with a probability proportional to it; an
``ε`` share of every round explores learners never tried. The utility is

    U_i = stat_i + sqrt(staleness · ln(round) / last_round_i)       (× (T / t_i)^α if t_i > T)

where ``stat_i`` is the statistical utility ``|B_i|·sqrt(mean loss²)``, taken here as
``num_examples·|last loss|`` because learners report their mean training loss, not
per-sample losses; it is clipped at a high quantile against outliers and min-max
normalised over the tried learners, as Oort does, so it is commensurate with the
staleness bonus. ``T`` is the preferred round duration (a fixed value or a quantile of
the durations seen) and ``t_i`` the learner's last duration: slow learners are
penalised by ``α``. Exploitation draws from every learner whose utility is at least
``cutoff`` times the k-th best (Oort's "95% of the cut-off utility"), not strictly the
top k, so the same cohort is not chosen round after round.

Defaults follow FedScale's Oort configuration (exploration 0.9, decay 0.98, floor 0.3,
round penalty α = 2, duration threshold at the 30th percentile, clip bound 0.98);
Oort's adaptive pacer (raising ``T`` when utility stalls) is not implemented: ``T``
follows the observed durations instead. Learners that fail ``max_failures`` times in a
row are blacklisted for ``blacklist_rounds`` rounds, then get a fresh start; a
blacklisted learner is still chosen as a last resort when too few others are available.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedpilot.ledger import LearnerOutcome
from fedpilot.selection._base import Selection
from fedpilot.selection._common import (
    LoggedSelector,
    available_pool,
    in_candidate_order,
    rank_descending,
    weighted_sample,
)
from fedpilot.spec.selection import OortSelection
from fedpilot.types import LearnerId, LearnerInfo, RoundContext


class OortSelector(LoggedSelector):
    """Guided participant selection after Oort; see the module docstring for the maths.

    Keyword arguments are the fields of :class:`~fedpilot.spec.selection.OortSelection`
    (the spec's ``selection`` section for ``oort``), which defines their meaning,
    defaults and bounds.
    """

    kind = "oort"

    def __init__(self, **params: Any) -> None:
        super().__init__()
        # Parameters, defaults and bounds are the spec section's, checked there.
        spec = OortSelection(**params)
        self.exploration = spec.exploration
        self.exploration_decay = spec.exploration_decay
        self.exploration_min = spec.exploration_min
        self.alpha = spec.alpha
        self.preferred_duration = spec.preferred_duration
        self.pacer_quantile = spec.pacer_quantile
        self.cutoff = spec.cutoff
        self.clip_quantile = spec.clip_quantile
        self.staleness = spec.staleness
        self.max_failures = spec.max_failures
        self.blacklist_rounds = spec.blacklist_rounds
        self.banned_until: dict[LearnerId, int] = {}

    def epsilon(self, round_: int) -> float:
        """The exploration share in round ``round_`` (1-based).

        A function of the round, not a counter, so a resumed run explores exactly as an
        uninterrupted one would.
        """
        decayed = self.exploration * self.exploration_decay ** max(0, round_ - 1)
        return max(self.exploration_min, decayed)

    def observe(self, *, ctx: RoundContext, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        super().observe(ctx=ctx, outcomes=outcomes)
        self.banned_until = {
            learner: until for learner, until in self.banned_until.items() if until >= ctx.round
        }
        for learner in sorted(outcomes):
            record = self.log.get(learner)
            if record is not None and record.streak >= self.max_failures:
                self.banned_until[learner] = ctx.round + self.blacklist_rounds
                record.streak = 0  # the reprieve: back with a clean slate once the ban ends

    def select(
        self,
        *,
        candidates: Sequence[LearnerInfo],
        size: int,
        ctx: RoundContext,
        rng: np.random.Generator,
    ) -> Selection:
        pool, k = available_pool(candidates, size)
        if k == 0:
            return Selection()
        banned = [i for i in pool if self.banned_until.get(i.id, -1) >= ctx.round]
        allowed = [i for i in pool if self.banned_until.get(i.id, -1) < ctx.round]
        tried = [i for i in allowed if self.log.tried(i.id)]
        fresh = [i for i in allowed if not self.log.tried(i.id)]

        # Oort's split: floor(k·(1-ε)) exploit, the rest explore; whichever side runs
        # short hands its places to the other.
        n_explore = k - math.floor(k * (1 - self.epsilon(ctx.round)) + 1e-9)
        n_explore = min(n_explore, len(fresh))
        n_exploit = min(k - n_explore, len(tried))
        n_explore = min(k - n_exploit, len(fresh))

        reasons: dict[LearnerId, str] = {}
        reasons.update(self._exploit(tried, n_exploit, ctx.round, rng))
        reasons.update(self._explore(fresh, n_explore, rng))
        short = k - len(reasons)
        if short > 0:
            expiry = [-float(self.banned_until[i.id]) for i in banned]  # soonest reprieve first
            for index in rank_descending(expiry, rng)[:short]:
                info = banned[index]
                reasons[info.id] = (
                    f"last resort: blacklisted until round {self.banned_until[info.id]} "
                    f"after {self.max_failures} failures in a row"
                )
        return in_candidate_order(pool, reasons)

    def utilities(self, tried: Sequence[LearnerInfo], round_: int) -> list[float]:
        """Oort's utility of each tried learner in round ``round_`` (see the module doc)."""
        records = [self.log.get(info.id) for info in tried]
        stats = [
            r.examples * abs(r.loss) if r is not None and r.loss is not None else 0.0
            for r in records
        ]
        if not stats:
            return []
        clip = float(np.quantile(stats, self.clip_quantile))
        clipped = [min(s, clip) for s in stats]
        low, high = min(clipped), max(clipped)
        preferred = self.preferred_seconds()
        log_round = math.log(max(round_, 1))
        scores = []
        for record, stat in zip(records, clipped, strict=True):
            score = (stat - low) / (high - low) if high > low else 1.0
            last = max(record.last_round, 1) if record is not None else 1
            score += math.sqrt(self.staleness * log_round / last)
            duration = record.duration if record is not None else None
            if preferred is not None and duration is not None and duration > preferred:
                score *= (preferred / duration) ** self.alpha
            scores.append(score)
        return scores

    def preferred_seconds(self) -> float | None:
        """``T``, the preferred round duration; None while no duration was reported."""
        if self.preferred_duration is not None:
            return float(self.preferred_duration)
        durations = [r.duration for r in self.log.records.values() if r.duration is not None]
        if not durations:
            return None
        return float(np.quantile(durations, self.pacer_quantile, method="lower"))

    def _exploit(
        self, tried: Sequence[LearnerInfo], n: int, round_: int, rng: np.random.Generator
    ) -> dict[LearnerId, str]:
        if n == 0:
            return {}
        scores = self.utilities(tried, round_)
        ranked = rank_descending(scores, rng)
        bar = self.cutoff * scores[ranked[n - 1]]
        admitted = [i for i in ranked if scores[i] >= bar]
        picked = weighted_sample([scores[i] for i in admitted], n, rng)
        rank_of = {index: rank for rank, index in enumerate(ranked, start=1)}
        preferred = self.preferred_seconds()
        reasons = {}
        for j in picked:
            index = admitted[j]
            info = tried[index]
            text = (
                f"exploit: utility {scores[index]:.3g} (rank {rank_of[index]} of "
                f"{len(tried)} tried, {len(admitted)} above the cut-off)"
            )
            record = self.log.get(info.id)
            slow = record.duration if record is not None else None
            if preferred is not None and slow is not None and slow > preferred:
                text += f", slow: {slow:.3g} s > preferred {preferred:.3g} s"
            reasons[info.id] = text
        return reasons

    def _explore(
        self, fresh: Sequence[LearnerInfo], n: int, rng: np.random.Generator
    ) -> dict[LearnerId, str]:
        if n == 0:
            return {}
        # Oort explores in proportion to data size; learners that declared none count as
        # an average one.
        declared = [info.declared_examples for info in fresh]
        known = [d for d in declared if d is not None and d > 0]
        typical = float(np.mean(known)) if known else 1.0
        weights = [float(d) if d is not None and d > 0 else typical for d in declared]
        reasons = {}
        for index in weighted_sample(weights, n, rng):
            size = declared[index]
            note = f", declares {size} examples" if size is not None else ""
            reasons[fresh[index].id] = f"explore: never tried{note}"
        return reasons

    def extra_state(self) -> dict[str, Any]:
        return {"banned_until": dict(self.banned_until)}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.banned_until = {str(k): int(v) for k, v in state.get("banned_until", {}).items()}
