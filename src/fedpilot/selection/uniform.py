"""Uniform selection: the classic FedAvg baseline, and its availability-aware variant."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedpilot.selection._base import Selection
from fedpilot.selection._common import (
    LoggedSelector,
    available_pool,
    check_size,
    in_candidate_order,
    unique,
)
from fedpilot.types import LearnerInfo, RoundContext


class RandomSelector(LoggedSelector):
    """Uniform over every candidate, available or not (McMahan et al.'s FedAvg sampling).

    An unavailable learner that is drawn simply fails that round; this is the baseline
    the other selectors are measured against.
    """

    kind = "random"

    def select(
        self,
        *,
        candidates: Sequence[LearnerInfo],
        size: int,
        ctx: RoundContext,
        rng: np.random.Generator,
    ) -> Selection:
        check_size(size)
        pool = unique(candidates)
        k = min(size, len(pool))
        picked = [int(i) for i in rng.choice(len(pool), size=k, replace=False)]
        reasons = {}
        for index in picked:
            info = pool[index]
            note = "" if info.available else " (not available now)"
            reasons[info.id] = f"uniform draw, {k} of {len(pool)} candidates{note}"
        return in_candidate_order(pool, reasons)


class AvailableSelector(LoggedSelector):
    """Uniform over the candidates that are available now."""

    kind = "available"

    def select(
        self,
        *,
        candidates: Sequence[LearnerInfo],
        size: int,
        ctx: RoundContext,
        rng: np.random.Generator,
    ) -> Selection:
        pool, k = available_pool(candidates, size)
        picked = [int(i) for i in rng.choice(len(pool), size=k, replace=False)]
        reasons = {
            pool[index].id: f"uniform draw, {k} of {len(pool)} available" for index in picked
        }
        return in_candidate_order(pool, reasons)
