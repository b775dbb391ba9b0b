"""Invariants of every partitioner: each sample assigned exactly once, reproducible splits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fedpilot.data import (
    DirichletPartitioner,
    IidPartitioner,
    Partitioner,
    PowerLawPartitioner,
    ShardsPartitioner,
    make_partitioner,
)
from fedpilot.spec.sections import DataSpec

PARTITIONERS: dict[str, Partitioner] = {
    "iid": IidPartitioner(),
    "dirichlet": DirichletPartitioner(alpha=0.5, min_size=1),
    "shards": ShardsPartitioner(per_learner=2),
    "powerlaw": PowerLawPartitioner(exponent=1.5, min_size=1),
}


@st.composite
def problems(draw: st.DrawFn, min_samples: int = 2) -> tuple[npt.NDArray[np.int64], int, int]:
    n = draw(st.integers(min_samples, 300))
    num_classes = draw(st.integers(1, 10))
    # Labels from a drawn seed: hypothesis explores sizes and class counts, numpy fills in.
    label_seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(label_seed).integers(0, num_classes, n)
    # Shards need two samples per learner; every other partitioner one.
    num_learners = draw(st.integers(1, max(1, min(20, n // 2))))
    seed = draw(st.integers(0, 2**32 - 1))
    return labels, num_learners, seed


def _split(
    partitioner: Partitioner, labels: npt.NDArray[np.int64], num_learners: int, seed: int
) -> list[npt.NDArray[np.int64]]:
    return partitioner.split(labels, num_learners, np.random.default_rng(seed))


def _split_or_discard(
    partitioner: Partitioner, labels: npt.NDArray[np.int64], num_learners: int, seed: int
) -> list[npt.NDArray[np.int64]]:
    """Split; a Dirichlet draw that cannot meet ``min_size`` (few samples of one class over
    many learners) raises its documented error, and hypothesis discards that example."""
    try:
        return _split(partitioner, labels, num_learners, seed)
    except ValueError as exc:
        assert isinstance(partitioner, DirichletPartitioner), exc
        assert "min_size" in str(exc) and "alpha" in str(exc)
        assume(False)
        raise


def _assert_exact_cover(parts: list[npt.NDArray[np.int64]], n: int, num_learners: int) -> None:
    assert len(parts) == num_learners
    assert all(p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


@pytest.mark.parametrize("name", sorted(PARTITIONERS))
@settings(max_examples=40, deadline=None)
@given(problem=problems())
def test_every_sample_assigned_exactly_once(
    name: str, problem: tuple[npt.NDArray[np.int64], int, int]
) -> None:
    labels, num_learners, seed = problem
    parts = _split_or_discard(PARTITIONERS[name], labels, num_learners, seed)
    _assert_exact_cover(parts, len(labels), num_learners)
    assert min(len(p) for p in parts) >= 1


@pytest.mark.parametrize("name", sorted(PARTITIONERS))
@settings(max_examples=20, deadline=None)
@given(problem=problems())
def test_same_seed_same_split(name: str, problem: tuple[npt.NDArray[np.int64], int, int]) -> None:
    labels, num_learners, seed = problem
    first = _split_or_discard(PARTITIONERS[name], labels, num_learners, seed)
    second = _split(PARTITIONERS[name], labels, num_learners, seed)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(PARTITIONERS))
@settings(max_examples=20, deadline=None)
@given(problem=problems(min_samples=100))
def test_different_seed_different_split(
    name: str, problem: tuple[npt.NDArray[np.int64], int, int]
) -> None:
    labels, num_learners, seed = problem
    if num_learners < 3:
        num_learners = 3
    first = _split_or_discard(PARTITIONERS[name], labels, num_learners, seed)
    second = _split_or_discard(PARTITIONERS[name], labels, num_learners, seed + 1)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    problem=problems(min_samples=60),
    alpha=st.floats(0.05, 10.0),
    min_size=st.integers(1, 5),
)
def test_dirichlet_honours_min_size(
    problem: tuple[npt.NDArray[np.int64], int, int], alpha: float, min_size: int
) -> None:
    labels, num_learners, seed = problem
    num_learners = min(num_learners, len(labels) // (2 * min_size))
    partitioner = DirichletPartitioner(alpha=alpha, min_size=min_size, max_retries=200)
    try:
        parts = _split(partitioner, labels, num_learners, seed)
    except ValueError as exc:
        # Tiny alphas on few classes may be infeasible; then the error says what to change.
        assert "min_size" in str(exc) and "alpha" in str(exc)
        return
    _assert_exact_cover(parts, len(labels), num_learners)
    assert min(len(p) for p in parts) >= min_size


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    labels = np.zeros(100, dtype=np.int64)
    partitioner = DirichletPartitioner(alpha=0.001, min_size=10, max_retries=5)
    with pytest.raises(ValueError, match=r"min_size=10.*5 draws"):
        _split(partitioner, labels, 10, seed=0)


def test_small_alpha_skews_labels() -> None:
    labels = np.repeat(np.arange(10), 100)
    skewed = _split(DirichletPartitioner(alpha=0.1), labels, 10, seed=0)
    even = _split(DirichletPartitioner(alpha=100.0), labels, 10, seed=0)

    def classes_held(parts: list[npt.NDArray[np.int64]]) -> float:
        return float(np.mean([len(np.unique(labels[p])) for p in parts]))

    assert classes_held(skewed) < 5 < classes_held(even)


def test_iid_sizes_differ_by_at_most_one() -> None:
    parts = _split(IidPartitioner(), np.zeros(103), 10, seed=3)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shards_give_each_learner_few_labels() -> None:
    labels = np.repeat(np.arange(10), 50)
    parts = _split(ShardsPartitioner(per_learner=2), labels, 10, seed=0)
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)


def test_powerlaw_sizes_are_unequal_and_above_minimum() -> None:
    parts = _split(PowerLawPartitioner(exponent=1.0, min_size=10), np.zeros(2000), 20, seed=0)
    sizes = sorted(len(p) for p in parts)
    assert sizes[0] >= 10
    assert sizes[-1] > 3 * sizes[len(sizes) // 2]


@pytest.mark.parametrize(
    ("partitioner", "num_learners", "message"),
    [
        (IidPartitioner(), 11, "num_learners=11"),
        (ShardsPartitioner(per_learner=2), 6, "per_learner"),
        (PowerLawPartitioner(min_size=3), 4, "min_size"),
        (DirichletPartitioner(alpha=1.0, min_size=2), 6, "min_size"),
        (IidPartitioner(), 0, "num_learners"),
    ],
)
def test_too_few_samples_is_a_clear_error(
    partitioner: Partitioner, num_learners: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _split(partitioner, np.zeros(10, dtype=np.int64), num_learners, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0, "min_size": 0}, "min_size"),
        ({"alpha": 1.0, "max_retries": 0}, "max_retries"),
    ],
)
def test_dirichlet_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DirichletPartitioner(**kwargs)  # type: ignore[arg-type]


def test_other_constructors_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="per_learner"):
        ShardsPartitioner(per_learner=0)
    with pytest.raises(ValueError, match="exponent"):
        PowerLawPartitioner(exponent=0)
    with pytest.raises(ValueError, match="min_size"):
        PowerLawPartitioner(min_size=0)


def test_string_labels_work() -> None:
    labels = np.array(["cat", "dog", "bird"] * 20)
    parts = _split(DirichletPartitioner(alpha=1.0), labels, 4, seed=0)
    _assert_exact_cover(parts, 60, 4)


@pytest.mark.parametrize(
    ("partition", "expected"),
    [
        ("iid", IidPartitioner),
        ("dirichlet(0.3)", DirichletPartitioner),
        ("shards(3)", ShardsPartitioner),
        ("powerlaw", PowerLawPartitioner),
    ],
)
def test_make_partitioner_maps_spec_sections(partition: str, expected: type) -> None:
    spec = DataSpec(partition=partition)  # type: ignore[arg-type]
    partitioner = make_partitioner(spec.partition)
    assert isinstance(partitioner, expected)


def test_make_partitioner_copies_section_fields() -> None:
    spec = DataSpec(partition={"kind": "dirichlet", "alpha": 0.3, "min_size": 4})  # type: ignore[arg-type]
    partitioner = make_partitioner(spec.partition)
    assert isinstance(partitioner, DirichletPartitioner)
    assert (partitioner.alpha, partitioner.min_size) == (0.3, 4)
    shards = make_partitioner(DataSpec(partition="shards(3)").partition)  # type: ignore[arg-type]
    assert isinstance(shards, ShardsPartitioner) and shards.per_learner == 3
