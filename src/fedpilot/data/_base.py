"""What a Task trains on (:class:`Dataset`), datasets as arrays, a learner's share of
them, and the Partitioner interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class Dataset(Protocol):
    """A learner's data as its Task loads it: anything that knows how many examples it
    holds (what the learner declares and its update is weighted by).

    Array tasks use :class:`ArrayDataset`; a task whose data is a folder of files or a
    loader defines its own type (a list of image paths, a wrapped ``DataLoader``) and
    trains on it in its own ``train``.
    """

    def __len__(self) -> int: ...


D = TypeVar("D", bound=Dataset)


@dataclass(frozen=True)
class ArrayDataset:
    """Features ``x`` (first axis = samples) and labels ``y``."""

    x: npt.NDArray[np.generic]
    y: npt.NDArray[np.generic]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y must have equal length, got {len(self.x)} and {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: npt.NDArray[np.integer]) -> ArrayDataset:
        return ArrayDataset(self.x[indices], self.y[indices])

    @staticmethod
    def concat(parts: Sequence[ArrayDataset]) -> ArrayDataset:
        return ArrayDataset(
            np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts])
        )


@dataclass(frozen=True)
class LearnerData(Generic[D]):
    """One learner's local data: what it trains on, and its held-out split (may be empty)."""

    train: D
    test: D | None


class Partitioner(ABC):
    """Splits sample indices among learners. Pure: randomness only from ``rng``."""

    @abstractmethod
    def split(
        self, labels: npt.NDArray[np.generic], num_learners: int, rng: np.random.Generator
    ) -> list[npt.NDArray[np.int64]]:
        """Return one index array per learner; together they hold every index exactly once."""


class FederatedDataset(ABC):
    """A dataset as the federation sees it: per-learner shares plus server-held data."""

    num_learners: int

    @abstractmethod
    def learner(self, index: int) -> LearnerData[ArrayDataset]:
        """Learner ``index``'s data (0 <= index < num_learners)."""

    @abstractmethod
    def central_test(self) -> ArrayDataset | None:
        """The server-held test set, or None if the federation has none."""

    @abstractmethod
    def pooled_train(self) -> ArrayDataset:
        """Every learner's training data in one set: the centralized baseline trains on it."""
