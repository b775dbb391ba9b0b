"""Partitioners: how a pooled dataset's samples are dealt out to learners.

Every partitioner is pure: its only randomness is the ``numpy.random.Generator`` it is
given, so the same labels, learner count and generator state give the same split. Each
returns one ``int64`` index array per learner, and together the arrays hold every sample
index exactly once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedpilot.data._base import Partitioner
from fedpilot.spec.sections import (
    DirichletPartition,
    IidPartition,
    Partition,
    PowerLawPartition,
    ShardsPartition,
)

__all__ = [
    "DirichletPartitioner",
    "IidPartitioner",
    "PowerLawPartitioner",
    "ShardsPartitioner",
    "make_partitioner",
]

IndexSplit = list[npt.NDArray[np.int64]]


def _check_counts(num_samples: int, num_learners: int, per_learner: int, what: str) -> None:
    if num_learners < 1:
        raise ValueError(f"`num_learners` must be >= 1, got num_learners={num_learners}")
    needed = num_learners * per_learner
    if needed > num_samples:
        raise ValueError(
            f"{what} needs at least num_learners * {per_learner} = {needed} samples, "
            f"but the dataset has {num_samples} (num_learners={num_learners})"
        )


def _sorted_parts(parts: list[npt.NDArray[np.int64]]) -> IndexSplit:
    # Sorted indices keep each learner's data in dataset order: splits are easier to
    # compare and slicing memory is read in order.
    return [np.sort(p).astype(np.int64, copy=False) for p in parts]


class IidPartitioner(Partitioner):
    """Shuffle, then cut into ``num_learners`` near-equal parts (sizes differ by at most 1)."""

    def split(
        self, labels: npt.NDArray[np.generic], num_learners: int, rng: np.random.Generator
    ) -> IndexSplit:
        """See :meth:`Partitioner.split`."""
        n = len(labels)
        _check_counts(n, num_learners, 1, "iid partition")
        order = rng.permutation(n).astype(np.int64)
        return _sorted_parts(np.array_split(order, num_learners))


class DirichletPartitioner(Partitioner):
    """Label skew: each class is split among learners with Dirichlet(alpha) proportions.

    This is the scheme of Yurochkin et al. (2019) used across the FL literature. A
    learner that already holds its fair share (``n / num_learners``) gets no more of
    the following classes, which keeps sizes from drifting to extremes. The draw is
    repeated until every learner has at least ``min_size`` samples; after
    ``max_retries`` failed draws a ``ValueError`` says which knob to turn.

    Args:
        alpha: Concentration (> 0); small values give each learner few labels.
        min_size: Fewest samples any learner may get.
        max_retries: Draws to try before giving up.
    """

    def __init__(self, alpha: float, min_size: int = 2, max_retries: int = 1000) -> None:
        if alpha <= 0:
            raise ValueError(f"`alpha` must be > 0, got alpha={alpha}")
        if min_size < 1:
            raise ValueError(f"`min_size` must be >= 1, got min_size={min_size}")
        if max_retries < 1:
            raise ValueError(f"`max_retries` must be >= 1, got max_retries={max_retries}")
        self.alpha = alpha
        self.min_size = min_size
        self.max_retries = max_retries

    def split(
        self, labels: npt.NDArray[np.generic], num_learners: int, rng: np.random.Generator
    ) -> IndexSplit:
        """See :meth:`Partitioner.split`."""
        n = len(labels)
        _check_counts(n, num_learners, self.min_size, "dirichlet partition (min_size)")
        _, codes = np.unique(labels, return_inverse=True)
        by_class = [np.flatnonzero(codes == c) for c in range(int(codes.max(initial=-1)) + 1)]
        for _ in range(self.max_retries):
            parts = self._draw(by_class, n, num_learners, rng)
            if min(len(p) for p in parts) >= self.min_size:
                return _sorted_parts(parts)
        raise ValueError(
            f"dirichlet partition could not give every learner >= min_size={self.min_size} "
            f"samples in {self.max_retries} draws (alpha={self.alpha}, "
            f"num_learners={num_learners}, samples={n}); raise `alpha`, lower `min_size` "
            "or use fewer learners"
        )

    def _draw(
        self,
        by_class: list[npt.NDArray[np.int64]],
        n: int,
        num_learners: int,
        rng: np.random.Generator,
    ) -> list[npt.NDArray[np.int64]]:
        chunks: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(num_learners)]
        sizes = np.zeros(num_learners, dtype=np.int64)
        fair_share = n / num_learners
        for members in by_class:
            members = rng.permutation(members)
            props = rng.dirichlet(np.full(num_learners, self.alpha))
            masked = np.where(sizes < fair_share, props, 0.0)
            # Tiny alphas can put all mass on learners that are already full; then the
            # unmasked draw is the only sensible one.
            props = masked / masked.sum() if masked.sum() > 0 else props
            cuts = (np.cumsum(props) * len(members)).astype(np.int64)[:-1]
            for learner, piece in enumerate(np.split(members, cuts)):
                chunks[learner].append(piece)
                sizes[learner] += len(piece)
        return [np.concatenate(c) if c else np.empty(0, dtype=np.int64) for c in chunks]


class ShardsPartitioner(Partitioner):
    """McMahan et al.'s pathological non-IID split: sort by label, cut into
    ``num_learners * per_learner`` shards and deal ``per_learner`` shards to each learner.

    Ties within a label are broken at random, so the seed decides which samples of a
    class land in which shard.

    Args:
        per_learner: Shards each learner receives.
    """

    def __init__(self, per_learner: int = 2) -> None:
        if per_learner < 1:
            raise ValueError(f"`per_learner` must be >= 1, got per_learner={per_learner}")
        self.per_learner = per_learner

    def split(
        self, labels: npt.NDArray[np.generic], num_learners: int, rng: np.random.Generator
    ) -> IndexSplit:
        """See :meth:`Partitioner.split`."""
        n = len(labels)
        _check_counts(n, num_learners, self.per_learner, "shards partition (per_learner)")
        shuffled = rng.permutation(n)
        by_label = shuffled[np.argsort(np.asarray(labels)[shuffled], kind="stable")]
        shards = np.array_split(by_label.astype(np.int64), num_learners * self.per_learner)
        deal = rng.permutation(len(shards)).reshape(num_learners, self.per_learner)
        return _sorted_parts([np.concatenate([shards[s] for s in row]) for row in deal])


class PowerLawPartitioner(Partitioner):
    """Unequal sizes: each learner gets ``min_size`` samples plus a share of the rest
    proportional to a Pareto(``exponent``) draw. Labels are spread at random.

    Args:
        exponent: Pareto shape (> 0); smaller values give heavier tails (a few big learners).
        min_size: Fewest samples any learner may get.
    """

    def __init__(self, exponent: float = 1.5, min_size: int = 10) -> None:
        if exponent <= 0:
            raise ValueError(f"`exponent` must be > 0, got exponent={exponent}")
        if min_size < 1:
            raise ValueError(f"`min_size` must be >= 1, got min_size={min_size}")
        self.exponent = exponent
        self.min_size = min_size

    def split(
        self, labels: npt.NDArray[np.generic], num_learners: int, rng: np.random.Generator
    ) -> IndexSplit:
        """See :meth:`Partitioner.split`."""
        n = len(labels)
        _check_counts(n, num_learners, self.min_size, "powerlaw partition (min_size)")
        weights = rng.pareto(self.exponent, num_learners) + 1.0
        extra_total = n - num_learners * self.min_size
        ideal = weights / weights.sum() * extra_total
        extra = np.floor(ideal).astype(np.int64)
        # Largest-remainder rounding: every sample is assigned and no learner is
        # rounded away from its ideal share by more than one sample.
        leftover = int(extra_total - extra.sum())
        extra[np.argsort(ideal - extra, kind="stable")[::-1][:leftover]] += 1
        sizes = extra + self.min_size
        order = rng.permutation(n).astype(np.int64)
        return _sorted_parts(np.split(order, np.cumsum(sizes)[:-1]))


def make_partitioner(section: Partition) -> Partitioner:
    """The partitioner for a spec's ``data.partition`` section.

    Args:
        section: One of the spec's partition sections.

    Returns:
        The matching partitioner, configured from the section.

    Raises:
        TypeError: ``section`` is not a known partition section.
    """
    if isinstance(section, IidPartition):
        return IidPartitioner()
    if isinstance(section, DirichletPartition):
        return DirichletPartitioner(section.alpha, section.min_size)
    if isinstance(section, ShardsPartition):
        return ShardsPartitioner(section.per_learner)
    if isinstance(section, PowerLawPartition):
        return PowerLawPartitioner(section.exponent, section.min_size)
    raise TypeError(f"unknown partition section {type(section).__name__}")
