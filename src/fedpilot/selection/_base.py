"""Selector: who trains this round, and what the orchestrator tells it afterwards."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedpilot.ledger.outcome import LearnerOutcome
from fedpilot.types import LearnerId, LearnerInfo, RoundContext


@dataclass(frozen=True)
class Selection:
    """The learners chosen for a round and why.

    Attributes:
        chosen: Distinct learner ids, in the order of the candidates they were chosen from.
        reasons: A short human-readable reason for every chosen id (``"explore: never
            tried"``, ``"utility 3.21 (rank 2 of 40)"``), for the audit trail.
    """

    chosen: tuple[LearnerId, ...] = ()
    reasons: dict[LearnerId, str] = field(default_factory=dict)


class Selector(ABC):
    """Chooses the learners that train each round.

    A selector is a pure core: it does no I/O and draws randomness only from the
    generator it is handed. :meth:`select` does not change the selector's state (only
    :meth:`observe` does), so the same state and the same generator always give the
    same selection, and a selector restored with :meth:`load_state_dict` continues
    exactly as the one that wrote the state would have.
    """

    @abstractmethod
    def select(
        self,
        *,
        candidates: Sequence[LearnerInfo],
        size: int,
        ctx: RoundContext,
        rng: np.random.Generator,
    ) -> Selection:
        """Choose ``min(size, eligible)`` learners among ``candidates``.

        Args:
            candidates: The learners the fleet reaches now (their ``available`` flag
                says whether they can take work).
            size: How many to choose (the orchestrator derives it from the spec).
            ctx: The round in progress.
            rng: The only source of randomness.

        Returns:
            The chosen learners, in candidate order, with a reason for each.
        """

    def observe(self, *, ctx: RoundContext, outcomes: Mapping[LearnerId, LearnerOutcome]) -> None:
        """Learn from what happened to the learners chosen in round ``ctx.round``."""
        del ctx, outcomes

    def state_dict(self) -> dict[str, Any]:
        """What must survive a checkpoint: JSON-able dicts, lists and numbers, with numpy
        arrays allowed as leaves (the checkpoint stores those as binary; see
        :func:`fedpilot.orchestrator.checkpoint.encode_state`)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, after a checkpoint's round trip."""
        del state
