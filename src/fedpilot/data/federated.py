"""The two shapes a built-in federation's data takes.

A *pooled* dataset (digits, MNIST-1D) is one train split dealt out by a partitioner, plus
a server-held test split. A *device* dataset (FedProx's synthetic data) already comes as
one dataset per device, and device ``k`` is learner ``k``. Either way each learner's
share is split once more into local train and test parts with the spec's
``test_fraction``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fedpilot.data._base import ArrayDataset, FederatedDataset, LearnerData, Partitioner
from fedpilot.types import derive_rng

__all__ = ["DeviceFederatedDataset", "PooledFederatedDataset", "local_split"]

Indices = npt.NDArray[np.int64]


def local_split(
    size: int, test_fraction: float, rng: np.random.Generator
) -> tuple[Indices, Indices]:
    """Split ``range(size)`` into local (train, test) index arrays.

    The test part holds ``round(test_fraction * size)`` samples, but never all of them:
    a learner always keeps at least one sample to train on.

    Args:
        size: Samples the learner holds.
        test_fraction: Share held out, in [0, 1).
        rng: The only source of randomness.

    Returns:
        Sorted train and test indices into the learner's share.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in [0, 1), got test_fraction={test_fraction}")
    n_test = min(round(test_fraction * size), max(size - 1, 0))
    order = rng.permutation(size).astype(np.int64)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _learner_data(share: ArrayDataset, train: Indices, test: Indices) -> LearnerData[ArrayDataset]:
    return LearnerData(share.subset(train), share.subset(test) if len(test) else None)


def _check_index(index: int, num_learners: int) -> None:
    if not 0 <= index < num_learners:
        raise IndexError(f"learner index must be in [0, {num_learners}), got index={index}")


class PooledFederatedDataset(FederatedDataset):
    """One pooled train split dealt out to ``num_learners`` by ``partitioner``.

    The partition and the local splits are computed once, at construction, from
    generators derived from ``seed``; learners' data are then cheap slices.

    Args:
        train: The pooled training data that learners share out.
        test: The server-held test set, or None.
        partitioner: Decides which learner holds which training sample.
        num_learners: How many learners share the data.
        test_fraction: Share of each learner's part held out as its local test set.
        seed: Seed of the partition and the local splits.
    """

    def __init__(
        self,
        train: ArrayDataset,
        test: ArrayDataset | None,
        *,
        partitioner: Partitioner,
        num_learners: int,
        test_fraction: float,
        seed: int,
    ) -> None:
        self.num_learners = num_learners
        self._train = train
        self._test = test
        parts = partitioner.split(train.y, num_learners, derive_rng(seed, 0, "data:partition"))
        split_rng = derive_rng(seed, 0, "data:local-split")
        self._train_idx: list[Indices] = []
        self._test_idx: list[Indices] = []
        self._learner_cache: dict[int, LearnerData[ArrayDataset]] = {}
        for part in parts:
            local_train, local_test = local_split(len(part), test_fraction, split_rng)
            self._train_idx.append(part[local_train])
            self._test_idx.append(part[local_test])

    def learner(self, index: int) -> LearnerData[ArrayDataset]:
        """Learner ``index``'s local train and test parts."""
        _check_index(index, self.num_learners)
        # Sliced once per learner: a process serving it every round reuses the arrays.
        data = self._learner_cache.get(index)
        if data is None:
            data = _learner_data(self._train, self._train_idx[index], self._test_idx[index])
            self._learner_cache[index] = data
        return data

    def central_test(self) -> ArrayDataset | None:
        """The server-held test split."""
        return self._test

    def pooled_train(self) -> ArrayDataset:
        """The union of every learner's local train part (local test parts excluded)."""
        return self._train.subset(np.sort(np.concatenate(self._train_idx)))


class DeviceFederatedDataset(FederatedDataset):
    """Naturally partitioned data: ``devices[k]`` is learner ``k``'s whole share.

    There is no separate server-held set; the central test set is the union of the
    learners' local test parts, as in the FedProx paper's evaluation.

    Args:
        devices: One dataset per learner.
        test_fraction: Share of each device's data held out as its local test set.
        seed: Seed of the local splits.
    """

    def __init__(self, devices: Sequence[ArrayDataset], *, test_fraction: float, seed: int) -> None:
        if not devices:
            raise ValueError("a device dataset needs at least one device")
        self.num_learners = len(devices)
        split_rng = derive_rng(seed, 0, "data:local-split")
        self._learners = [
            _learner_data(d, *local_split(len(d), test_fraction, split_rng)) for d in devices
        ]

    def learner(self, index: int) -> LearnerData[ArrayDataset]:
        """Device ``index``'s local train and test parts."""
        _check_index(index, self.num_learners)
        return self._learners[index]

    def central_test(self) -> ArrayDataset | None:
        """The union of the devices' test parts, or None when none holds any."""
        tests = [ld.test for ld in self._learners if ld.test is not None]
        return ArrayDataset.concat(tests) if tests else None

    def pooled_train(self) -> ArrayDataset:
        """The union of the devices' train parts."""
        return ArrayDataset.concat([ld.train for ld in self._learners])
