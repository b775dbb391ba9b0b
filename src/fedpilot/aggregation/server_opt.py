"""Server optimizers. FedAvg's step: move the global model towards the aggregate."""

from __future__ import annotations

import numpy as np

from fedpilot.aggregation._base import ServerOptimizer
from fedpilot.types import Weights


class FedAvgStep(ServerOptimizer):
    """``w ← w + server_lr · (aggregate − w)``; with server_lr = 1 the aggregate itself."""

    def __init__(self, server_lr: float = 1.0) -> None:
        if server_lr <= 0:
            raise ValueError(f"`server_lr` must be > 0, got server_lr={server_lr}")
        self.server_lr = server_lr

    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        if self.server_lr == 1.0:
            return [a.copy() for a in aggregate]
        out: Weights = []
        for w, a in zip(current, aggregate, strict=True):
            if np.issubdtype(w.dtype, np.floating):
                current_ = w.astype(np.float64)
                moved = current_ + self.server_lr * (a.astype(np.float64) - current_)
                out.append(moved.astype(w.dtype))
            else:  # counters and other integer buffers follow the aggregate
                out.append(a.copy())
        return out
