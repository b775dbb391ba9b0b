"""Power-of-choice (Cho, Wang and Joshi, AISTATS 2022): favour learners with high local loss.

The paper's ``pow-d`` samples a candidate set of ``d`` learners, asks each for its
current local loss on the global model (an extra query round), and trains the ``size``
with the highest loss. That costs a round trip per round, so this selector ranks by
the *last reported* training loss instead, as the paper's communication-efficient
``cpow-d`` variant does with stale estimates. Learners never seen rank first: their loss
is unknown, and an optimistic guess makes every learner report one early on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedpilot.selection._base import Selection
from fedpilot.selection._common import (
    LoggedSelector,
    available_pool,
    in_candidate_order,
    rank_descending,
)
from fedpilot.spec.selection import PowerOfChoiceSelection
from fedpilot.types import LearnerInfo, RoundContext


class PowerOfChoiceSelector(LoggedSelector):
    """Draw ``d = ceil(factor·size)`` available learners uniformly; keep the highest-loss ones.

    Keyword arguments: the fields of :class:`~fedpilot.spec.selection.PowerOfChoiceSelection`
    (``factor``: ``d / size``; 1 is uniform selection, larger values bias harder towards
    high loss, and towards the learners whose data the model fits worst).
    """

    kind = "power_of_choice"

    def __init__(self, **params: Any) -> None:
        super().__init__()
        # ``factor``, its default and bounds are the spec section's, checked there.
        self.factor = PowerOfChoiceSelection(**params).factor

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
        d = min(len(pool), math.ceil(self.factor * k - 1e-9))
        drawn = [pool[int(i)] for i in rng.choice(len(pool), size=d, replace=False)]
        keys = [self._key(info) for info in drawn]
        reasons = {}
        for rank, index in enumerate(rank_descending(keys, rng)[:k], start=1):
            key = keys[index]
            if key == math.inf:
                what = "never seen"
            elif key < 0:
                what = "tried, no loss reported"
            else:
                what = f"last loss {key:.4g}"
            reasons[drawn[index].id] = f"{what} (rank {rank} of {d} drawn)"
        return in_candidate_order(pool, reasons)

    def _key(self, info: LearnerInfo) -> float:
        record = self.log.get(info.id)
        if record is None or record.tried == 0:
            return math.inf  # optimism: a learner never seen goes first
        if record.loss is None:
            return -1.0  # tried, but never an accepted loss (failures): after all others
        return abs(record.loss)
