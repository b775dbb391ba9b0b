"""Aggregator (a fold of a round's accepted updates) and ServerOptimizer (the server step)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fedpilot.types import LearnerId, RoundContext, Update, Weights


@dataclass(frozen=True)
class AggregationReport:
    """What the last :meth:`Aggregator.result` did with each update (for events and audit).

    Attributes:
        shares: Each update's share of the aggregate where the rule defines one (the
            normalised weights of a mean, Multi-Krum's average or RFA's final Weiszfeld
            step; 1.0 for Krum's pick). Empty for coordinate-wise rules (median, trimmed
            mean, Bulyan), where no update has a single share.
        clip_factors: The factor ``bound / ‖delta‖`` of every update that norm bounding
            actually scaled down; updates left alone are absent.
        selected: The updates a Krum-family rule selected, in canonical (learner id)
            order; None for other rules.
        byzantine: The number of Byzantine updates ``f`` the rule assumed; None where
            the rule has no such parameter.
        excluded: Updates dropped by :meth:`Aggregator.exclude`, with the reason.
    """

    shares: dict[LearnerId, float] = field(default_factory=dict)
    clip_factors: dict[LearnerId, float] = field(default_factory=dict)
    selected: tuple[LearnerId, ...] | None = None
    byzantine: int | None = None
    excluded: dict[LearnerId, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What a round's record keeps of it: the fields a rule set, as plain data."""
        out: dict[str, Any] = {}
        if self.selected is not None:
            out["selected"] = list(self.selected)
        if self.clip_factors:
            out["clip_factors"] = dict(self.clip_factors)
        if self.byzantine is not None:
            out["byzantine"] = self.byzantine
        return out


class Aggregator(ABC):
    """Folds a round's accepted updates into one aggregate.

    The orchestrator calls ``begin`` once per round, ``add`` once per accepted update
    (in arrival order), optionally ``exclude`` for cohort-level rejections, then
    ``result``. Streaming implementations hold O(model) state; buffered ones (robust
    rules) keep the updates on disk, never a list of them in memory.
    """

    @abstractmethod
    def begin(self, *, reference: Weights, ctx: RoundContext) -> None:
        """Reset for a new round; ``reference`` is the current global model."""

    @abstractmethod
    def add(self, update: Update) -> None:
        """Fold one accepted update in."""

    @abstractmethod
    def result(self) -> Weights:
        """The aggregate of everything added (and not excluded) since ``begin``."""

    @property
    @abstractmethod
    def count(self) -> int:
        """How many updates were added (and not excluded) this round."""

    def exclude(self, learner: LearnerId, reason: str) -> None:
        """Drop an already added update (a cohort-level rejection such as a norm outlier).

        Raises:
            NotImplementedError: always, unless overridden: a streaming fold has already
                mixed the update into its sums and cannot take it out again.
        """
        raise NotImplementedError(
            f"{type(self).__name__} is a streaming aggregator and cannot drop an update "
            f"once added (learner {learner!r}, reason: {reason}); cohort-level checks "
            "need the rule aggregator (updates kept on disk)"
        )

    @property
    def last_report(self) -> AggregationReport:
        """What the last ``result`` did with each update; empty before the first."""
        return AggregationReport()

    def close(self) -> None:
        """Release what the aggregator holds between rounds (files); a no-op by default."""


class ServerOptimizer(ABC):
    """Turns the round's aggregate into the next global model."""

    @abstractmethod
    def step(self, *, current: Weights, aggregate: Weights) -> Weights:
        """The candidate global model; must not modify its arguments."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive a checkpoint (numpy arrays allowed as values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        del state


def check_weight(update: Update) -> float:
    """The update's aggregation weight, which must be finite and >= 0."""
    weight = update.aggregation_weight
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(
            f"update from {update.learner}: aggregation weight must be finite and >= 0, "
            f"got {weight}"
        )
    return weight


def check_shapes(update: Update, shapes: Sequence[tuple[int, ...]]) -> None:
    """The update has one array per expected shape, each of that shape.

    Checked, not left to torch or numpy: an in-place add would broadcast a (4,) array
    into (3, 4).
    """
    if len(update.weights) != len(shapes):
        raise ValueError(
            f"update from {update.learner} has {len(update.weights)} arrays, expected {len(shapes)}"
        )
    for index, (array, shape) in enumerate(zip(update.weights, shapes, strict=True)):
        if array.shape != shape:
            raise ValueError(
                f"update from {update.learner}: array {index} has shape {array.shape}, "
                f"expected {shape}"
            )
