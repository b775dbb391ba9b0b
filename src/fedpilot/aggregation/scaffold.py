"""SCAFFOLD's server side (Karimireddy et al., 2020): the global step plus the server
control variate c, which learners use to correct their drift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedpilot.aggregation.server_opt import FedAvgStep
from fedpilot.learner.protocol import SCAFFOLD_CONTROL, SCAFFOLD_DELTA
from fedpilot.types import Weights


class ScaffoldStep(FedAvgStep):
    """``x ← x + η_g·(mean y_i − x)`` and ``c ← c + (|S|/N)·mean Δc_i``.

    The orchestrator sends :meth:`learner_extras` with every train instruction and hands
    the accepted learners' extras (their control deltas) to :meth:`absorb` before
    :meth:`step`. ``c`` is
    part of :meth:`state_dict`, so checkpoints, resumes and rollbacks carry it.

    Args:
        server_lr: η_g, the global step size.
        num_learners: N, the federation's size.
    """

    def __init__(self, server_lr: float, num_learners: int) -> None:
        super().__init__(server_lr)
        if num_learners < 1:
            raise ValueError(f"`num_learners` must be >= 1, got num_learners={num_learners}")
        self.num_learners = num_learners
        self._control: Weights | None = None
        self._pending: Weights | None = None

    def learner_extras(self, current: Weights) -> dict[str, Weights]:
        """What a train instruction carries beside the model: c (zeros at first)."""
        if self._control is None:
            self._control = [np.zeros(w.shape, np.float32) for w in current]
        return {SCAFFOLD_CONTROL: self._control}

    def absorb(self, extras: Sequence[dict[str, Weights]]) -> None:
        """The accepted updates' extras; the mean control delta waits for :meth:`step`."""
        deltas = [e[SCAFFOLD_DELTA] for e in extras if SCAFFOLD_DELTA in e]
        if not deltas or self._control is None:
            self._pending = None
            return
        share = len(deltas) / self.num_learners
        pending: Weights = []
        for i in range(len(self._control)):
            total = np.zeros(self._control[i].shape, np.float64)
            for d in deltas:
                total += np.asarray(d[i], np.float64)
            pending.append((total * (share / len(deltas))).astype(np.float32))
        self._pending = pending

    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        candidate = super().step(current=current, aggregate=aggregate)
        if self._pending is not None and self._control is not None:
            self._control = [
                (np.asarray(c, np.float32) + np.asarray(d, np.float32)).astype(np.float32)
                for c, d in zip(self._control, self._pending, strict=True)
            ]
        self._pending = None
        return candidate

    def state_dict(self) -> dict[str, Any]:
        if self._control is None:
            return {}
        return {f"control.{i}": c.copy() for i, c in enumerate(self._control)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = sorted((k for k in state if k.startswith("control.")), key=lambda k: int(k[8:]))
        self._control = [np.asarray(state[k], np.float32).copy() for k in keys] or None
        self._pending = None
