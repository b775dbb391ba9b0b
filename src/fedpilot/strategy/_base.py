"""Strategy: what a federated optimisation algorithm needs from the rest of the system.

A strategy does not run anything itself. It describes itself, and the parts that run a
round ask it: which update transforms the learners and the server apply, which reply
metrics every update must carry, the server step, its own fold of the round's updates
where a plain rule will not do, and what it cannot be combined with. The round loop and
the spec validator therefore never name a strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from fedpilot.aggregation._base import Aggregator, ServerOptimizer
from fedpilot.spec.aggregation import AggregationSpec
from fedpilot.spec.sections import Section

P = TypeVar("P", bound=Section)

TransformRef = tuple[str, dict[str, Any]]
"""An update transform by registry name, with its parameters."""


class Strategy(ABC, Generic[P]):
    """One federated optimisation algorithm, configured by its spec section.

    Its parameters, their defaults and bounds are the fields of :attr:`Params` (the
    ``strategy`` section of the spec); the strategy is built from a validated instance
    and never restates them.

    Args:
        params: The strategy's section of the spec.
    """

    Params: ClassVar[type[Section]]
    """The spec section that configures this strategy."""

    def __init__(self, params: P) -> None:
        self.params = params

    @property
    def name(self) -> str:
        """The strategy's spec name (``strategy.name``)."""
        return str(getattr(self.params, "name", type(self).__name__))

    def transforms(self) -> tuple[TransformRef, ...]:
        """Update transforms every update passes (learner and server halves); none by default."""
        return ()

    def required_metrics(self) -> tuple[str, ...]:
        """Reply metrics every accepted update must carry; none by default."""
        return ()

    @abstractmethod
    def server_optimizer(self) -> ServerOptimizer:
        """A fresh server step (turns the round's aggregate into the next model)."""

    def aggregator(self) -> Aggregator | None:
        """The strategy's own fold of a round's updates, replacing the aggregation rule;
        None (the default) to use ``aggregation.rule``."""
        return None

    def conflicts(self, *, aggregation: AggregationSpec, cohort_checks: bool) -> list[str]:
        """Settings this strategy cannot run with, each as it appears in the spec.

        Args:
            aggregation: The ``aggregation`` section.
            cohort_checks: Whether updates may be rejected after the whole cohort is
                seen (``validation.norm_outlier_z``).
        """
        del aggregation, cohort_checks
        return []

    requirement: ClassVar[str] = ""
    """Why :meth:`conflicts` refuses what it refuses (ends the error message)."""

    def incompatibility(self, *, aggregation: AggregationSpec, cohort_checks: bool) -> str | None:
        """The message for :meth:`conflicts`, naming ``strategy.name``; None when none."""
        found = self.conflicts(aggregation=aggregation, cohort_checks=cohort_checks)
        if not found:
            return None
        why = f": {self.requirement}" if self.requirement else ""
        return f"`strategy.name` {self.name} with {' and '.join(found)} is not supported{why}"
