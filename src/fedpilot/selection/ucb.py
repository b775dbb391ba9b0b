"""A UCB1 bandit (Auer et al., 2002) over learners, rewarded by measured contribution."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedpilot.ledger import LearnerOutcome
from fedpilot.ledger.participation import finite_or_none
from fedpilot.selection._base import Selection
from fedpilot.selection._common import (
    LoggedSelector,
    available_pool,
    in_candidate_order,
    rank_descending,
)
from fedpilot.spec.selection import UcbSelection
from fedpilot.types import LearnerId, LearnerInfo, RoundContext


def contributions(outcomes: Mapping[LearnerId, LearnerOutcome]) -> dict[LearnerId, float]:
    """Each learner's reward for a round, in [0, 1].

    Contribution is statistical utility per second, ``num_examples·|loss| / duration``
    (Oort's utility, made per-time so that fast learners with informative data win),
    divided by the round's largest so rewards stay comparable as losses shrink over
    training. Failed and rejected learners earn 0. An accepted learner that reported no
    duration is assumed as slow as the slowest one that did: optimism there would
    reward learners for not measuring.
    """
    durations = [_seconds(o) for o in outcomes.values() if o.status == "accepted"]
    fallback = max((d for d in durations if d is not None), default=1.0)
    raw: dict[LearnerId, float] = {}
    for learner, outcome in outcomes.items():
        loss = finite_or_none(outcome.loss)
        if outcome.status != "accepted" or loss is None or outcome.num_examples <= 0:
            raw[learner] = 0.0
            continue
        seconds = _seconds(outcome)
        raw[learner] = outcome.num_examples * abs(loss) / (fallback if seconds is None else seconds)
    top = max(raw.values(), default=0.0)
    return {learner: (value / top if top > 0 else 0.0) for learner, value in raw.items()}


def _seconds(outcome: LearnerOutcome) -> float | None:
    duration = finite_or_none(outcome.duration)
    return duration if duration is not None and duration > 0 else None


class UcbSelector(LoggedSelector):
    """Pick the available learners with the highest upper confidence bound on contribution.

    ``score_i = mean_reward_i + c·sqrt(2·ln(t) / n_i)`` with ``t`` the rounds observed so
    far and ``n_i`` the rounds learner ``i`` took part in; rewards are
    :func:`contributions`. Learners never tried have an unbounded score and go first.

    Keyword arguments: the fields of :class:`~fedpilot.spec.selection.UcbSelection`
    (``c``: weight of the exploration bonus; 0 is greedy, 1 is textbook UCB1).
    """

    kind = "ucb"

    def __init__(self, **params: Any) -> None:
        super().__init__()
        # ``c``, its default and bounds are the spec section's, checked there.
        self.c = UcbSelection(**params).c
        self.reward_sum: dict[LearnerId, float] = {}
        self.rounds = 0

    def observe(self, *, ctx: RoundContext, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        super().observe(ctx=ctx, outcomes=outcomes)
        if not outcomes:
            return
        self.rounds += 1
        rewards = contributions(outcomes)
        for learner in sorted(rewards):
            self.reward_sum[learner] = self.reward_sum.get(learner, 0.0) + rewards[learner]

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
        log_t = math.log(max(self.rounds, 1))
        keys: list[float] = []
        parts: list[tuple[float, float] | None] = []
        for info in pool:
            record = self.log.get(info.id)
            if record is None or record.tried == 0:
                keys.append(math.inf)
                parts.append(None)
                continue
            mean = self.reward_sum.get(info.id, 0.0) / record.tried
            bonus = self.c * math.sqrt(2.0 * log_t / record.tried)
            keys.append(mean + bonus)
            parts.append((mean, bonus))
        reasons = {}
        for rank, index in enumerate(rank_descending(keys, rng)[:k], start=1):
            part = parts[index]
            if part is None:
                reasons[pool[index].id] = "explore: never tried"
            else:
                mean, bonus = part
                reasons[pool[index].id] = (
                    f"ucb {mean + bonus:.3g} = mean {mean:.3g} + bonus {bonus:.3g} "
                    f"(rank {rank} of {len(pool)})"
                )
        return in_candidate_order(pool, reasons)

    def extra_state(self) -> dict[str, Any]:
        return {"reward_sum": dict(self.reward_sum), "rounds": self.rounds}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.reward_sum = {str(k): float(v) for k, v in state.get("reward_sum", {}).items()}
        self.rounds = int(state.get("rounds", 0))
