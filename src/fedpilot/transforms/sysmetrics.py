"""``sysmetrics``: what a learner's work cost its machine, reported with every reply."""

from __future__ import annotations

from fedpilot.learner.sysmetrics import Meter
from fedpilot.transforms._base import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerState, Weights


@TRANSFORMS.register("sysmetrics")
class SystemMetrics(UpdateTransform):
    """Adds ``sys.*`` metrics (:class:`~fedpilot.learner.sysmetrics.Meter`) to the output.

    Always the outermost stage of a learner's chain, so ``sys.bytes_received`` counts the
    arrays as they arrived and ``sys.bytes_sent`` what goes on the wire after every
    other transform changed the output (weights and extras).
    """

    name = "sysmetrics"

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state, ctx
        received: Weights = [*work.weights]
        for arrays in work.extras.values():
            received.extend(arrays)
        meter = Meter(received)
        out = run(work)
        out.metrics.update(meter.read(out.weights, *out.extras.values()))
        return out
