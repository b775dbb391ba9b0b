"""A user's selector that keeps no participation log of its own (tests only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedpilot.selection import Selection, Selector
from fedpilot.types import LearnerInfo, RoundContext


class EveryAvailable(Selector):
    """The first ``size`` available learners, in candidate order."""

    def select(
        self,
        *,
        candidates: Sequence[LearnerInfo],
        size: int,
        ctx: RoundContext,
        rng: np.random.Generator,
    ) -> Selection:
        del ctx, rng
        chosen = tuple(info.id for info in candidates if info.available)[:size]
        return Selection(chosen=chosen, reasons=dict.fromkeys(chosen, "available"))
