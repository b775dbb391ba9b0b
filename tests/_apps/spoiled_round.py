"""A server stage that ruins one round's aggregate: ``spoiled_round:SpoiledRound``.

In round ``round`` every floating-point array of the aggregate gets Gaussian noise as
large as its own spread (integer buffers are left alone); other rounds pass through. It
stands for a bad round the update checks cannot see (each update was fine), which is
what the guard is for.
"""

from __future__ import annotations

import numpy as np

from fedpilot.transforms import UpdateTransform
from fedpilot.types import RoundContext, Weights


class SpoiledRound(UpdateTransform):
    name = "spoiled_round"

    def __init__(self, round: int) -> None:
        self.round = round

    def on_server(self, aggregate: Weights, *, reference: Weights, ctx: RoundContext) -> Weights:
        if ctx.round != self.round:
            return aggregate
        rng = np.random.default_rng(ctx.round)
        return [
            a + rng.normal(0.0, float(a.std()) + 1e-3, a.shape).astype(a.dtype)
            if np.issubdtype(a.dtype, np.floating)
            else a
            for a in aggregate
        ]
