"""AggregationRule: how the rule aggregator combines a round's update deltas.

A rule sees the round's deltas (update − current model, flattened, float32) as an
``n × dim`` matrix it can only read in column chunks (:class:`Rows`), so a rule written
against it runs in memory bounded by ``n × chunk``, however large the model. Rows come
in canonical order (sorted by learner id), so a rule that breaks ties by row index is
independent of the order updates arrived in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from fedpilot.spec.aggregation import AggregationSpec

FloatRows = npt.NDArray[np.float32]
"""A ``(rows, width)`` block of deltas: one chunk of columns of some rows."""
Vector = npt.NDArray[np.float64]


class Rows(Protocol):
    """The round's deltas as a read-only ``n × dim`` matrix, read in column chunks."""

    @property
    def n(self) -> int:
        """Number of rows (updates), at least 1."""
        ...

    @property
    def dim(self) -> int:
        """Number of columns (floating parameters of the model)."""
        ...

    @property
    def weights(self) -> Vector:
        """Each row's aggregation weight (``Update.aggregation_weight``), non-negative."""
        ...

    def chunks(self, select: Sequence[int] | None = None) -> Iterator[tuple[slice, FloatRows]]:
        """Yield ``(columns, block)`` covering all columns in order.

        Args:
            select: Row indices to read (in this order); all rows when None.

        The block is a scratch buffer reused for the next chunk: a rule may overwrite
        it, and must copy what it wants to keep.
        """
        ...


@dataclass(frozen=True)
class RuleOutcome:
    """What a rule reports besides the combined delta; row indices are canonical.

    Attributes:
        shares: Each row's share of the result where the rule defines one.
        selected: Rows a selection rule (the Krum family) kept.
        byzantine: The ``f`` the rule assumed.
    """

    shares: Vector | None = None
    selected: tuple[int, ...] | None = None
    byzantine: int | None = None


class AggregationRule(ABC):
    """Combines a round's deltas into one delta, column chunk by column chunk.

    Implementations are pure: no I/O beyond :meth:`Rows.chunks`, no global RNG, and a
    result that depends only on the rows (in their canonical order), never on timing.
    A user's own rule subclasses this and is named in the spec as ``package.module:Class``.
    """

    name: ClassVar[str] = ""
    """The spec name (``aggregation.rule``) of a built-in rule."""

    @classmethod
    def from_spec(cls, spec: AggregationSpec) -> Self:
        """Build the rule from the ``aggregation`` section; the default takes no options."""
        del spec
        return cls()

    @abstractmethod
    def combine(self, rows: Rows, out: npt.NDArray[np.float32]) -> RuleOutcome:
        """Write the combined delta (length ``rows.dim``) into ``out``.

        Raises:
            ValueError: when there are fewer rows than the rule needs; the message names
                the rule, ``n`` and, where it applies, ``f``.
        """
