"""``scaffold``: SCAFFOLD's control variates (Karimireddy et al., 2020, option II).

Both halves in one place. The server keeps c and sends it with every train instruction
(:data:`CONTROL`); the learner corrects every local gradient by ``c − c_i``, keeps its
own ``c_i`` in its per-learner state and sends back the change of ``c_i``
(:data:`DELTA`); the server moves c by ``(|S|/N)·mean Δc_i`` between the aggregate and
the server step (a plain FedAvg step).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.learner.protocol import settings_from_config
from fedpilot.transforms._base import (
    GradientTerm,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerId, LearnerState, RoundContext, Update, Weights

CONTROL = "scaffold-control"
"""The extra a train instruction carries: the server's control variate c."""
DELTA = "scaffold-control-delta"
"""The extra a learner's reply carries: the change of its own c_i."""
_OWN = "control"
"""The learner's c_i in its state (``scaffold/control``)."""


class ControlShift(GradientTerm):
    """``c − c_i``, one array per ``get_weights()`` entry, added to every gradient."""

    def __init__(self, correction: Weights) -> None:
        self.correction = correction
        self._tensors: dict[int, Any] = {}

    def __call__(self, index: int, param: Any, start: Any) -> Any:
        del start
        shift = self._tensors.get(index)
        if shift is None:
            # Made once per parameter, on the parameter's device and dtype.
            shift = param.new_tensor(np.ascontiguousarray(self.correction[index], np.float32))
            self._tensors[index] = shift
        return shift


@TRANSFORMS.register("scaffold")
class Scaffold(UpdateTransform):
    """SCAFFOLD's control variates, learner and server halves."""

    name = "scaffold"

    def __init__(self) -> None:
        self._control: Weights | None = None
        self._deltas: dict[LearnerId, Weights] = {}
        self._round = -1

    # -- learner half ---------------------------------------------------------------

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del ctx
        control = work.extras.get(CONTROL)
        if work.kind != "train" or control is None:
            return run(work)
        c = [_floats(a) for a in control]
        kept = state.get(_OWN)
        own = [_floats(a) for a in kept] if kept else [np.zeros_like(a) for a in c]  # c_i = 0
        work.gradient_terms.append(
            ControlShift([(c_ - o).astype(np.float32) for c_, o in zip(c, own, strict=True)])
        )
        start = work.weights
        out = run(work)
        # c_i⁺ = c_i − c + (x − y_i) / (K·η_l): what the K local steps revealed of the drift.
        lr = settings_from_config(work.config).lr
        scale = 1.0 / (max(out.metrics.get("local_steps", 1.0), 1.0) * lr)
        new_own: Weights = [
            (o - g + (_floats(x) - _floats(y)) * scale).astype(np.float32)
            for o, g, x, y in zip(own, c, start, out.weights, strict=True)
        ]
        out.extras[DELTA] = [
            (_floats(n) - o).astype(np.float32) for n, o in zip(new_own, own, strict=True)
        ]
        state[_OWN] = new_own
        return out

    # -- server half ----------------------------------------------------------------

    def train_extras(
        self, *, learner: LearnerId, weights: Weights, ctx: RoundContext
    ) -> dict[str, Weights]:
        del learner, ctx
        if self._control is None:
            self._control = [np.zeros(w.shape, np.float32) for w in weights]
        return {CONTROL: self._control}

    def on_accepted(self, update: Update, *, ctx: RoundContext) -> None:
        if ctx.round != self._round:
            self._deltas, self._round = {}, ctx.round
        delta = update.extras.get(DELTA)
        if delta is not None:
            self._deltas[update.learner] = delta

    def on_server(self, aggregate: Weights, *, reference: Weights, ctx: RoundContext) -> Weights:
        del reference
        # Summed in learner order, not arrival order: the same c whatever the fleet.
        deltas = [self._deltas[k] for k in sorted(self._deltas)] if ctx.round == self._round else []
        self._deltas = {}
        if not deltas or self._control is None:
            return aggregate
        share = len(deltas) / max(ctx.num_learners, len(deltas))
        moved: Weights = []
        for i, c in enumerate(self._control):
            total = np.zeros(c.shape, np.float64)
            for d in deltas:
                total += np.asarray(d[i], np.float64)
            step = (total * (share / len(deltas))).astype(np.float32)
            moved.append((np.asarray(c, np.float32) + step).astype(np.float32))
        self._control = moved
        return aggregate

    def state_dict(self) -> dict[str, Any]:
        if self._control is None:
            return {}
        return {f"control.{i}": c.copy() for i, c in enumerate(self._control)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = sorted((k for k in state if k.startswith("control.")), key=lambda k: int(k[8:]))
        self._control = [np.asarray(state[k], np.float32).copy() for k in keys] or None
        self._deltas = {}


def _floats(array: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(array, dtype=np.float64)
