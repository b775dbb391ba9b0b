"""``proximal``: FedProx's proximal term (Li et al., 2020) in every local gradient."""

from __future__ import annotations

from typing import Any

from fedpilot.transforms._base import (
    GradientTerm,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerState


class ProximalTerm(GradientTerm):
    """The gradient of ``mu/2·||w − w_start||²``: ``mu·(w − w_start)``, as
    ``w − w_start`` added with ``alpha = mu``.

    Adding it to the gradient directly is cheaper than putting the term in the autograd
    graph; the reported loss stays the task's own, without the term.
    """

    def __init__(self, mu: float) -> None:
        self.mu = self.alpha = mu

    def __call__(self, index: int, param: Any, start: Any) -> Any:
        del index
        return param - start  # scaled by alpha = mu as it is added


@TRANSFORMS.register("proximal")
class Proximal(UpdateTransform):
    """Pulls local training towards the round's global model with weight ``mu``.

    Args:
        mu: Weight of the proximal term; 0 leaves training unchanged.
    """

    name = "proximal"

    def __init__(self, mu: float = 0.01) -> None:
        if not mu >= 0:
            raise ValueError(f"`mu` must be >= 0, got mu={mu}")
        self.mu = float(mu)

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state, ctx
        if work.kind == "train" and self.mu > 0:
            work.gradient_terms.append(ProximalTerm(self.mu))
        return run(work)
