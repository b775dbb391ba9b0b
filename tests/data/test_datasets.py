"""Built-in datasets: shapes, determinism, the FedProx synthetic data's statistics, caching."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedpilot.data import (
    DATASETS,
    ArrayDataset,
    FederatedDataset,
    build_federated_dataset,
    cache_dir,
    datasets,
    generate_synthetic,
    local_split,
    mnist1d_arrays,
)
from fedpilot.errors import SpecError
from fedpilot.spec.sections import DataSpec

SMALL_MNIST1D = {"num_samples": 300}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # One cache folder for the module: MNIST-1D is generated once, never in ~/.cache.
    folder = tmp_path_factory.getbasetemp() / "fedpilot-cache"
    monkeypatch.setenv("FEDPILOT_CACHE_DIR", str(folder))
    return folder


def build(dataset: str, seed: int = 0, **fields: Any) -> FederatedDataset:
    return build_federated_dataset(
        DataSpec(dataset=dataset, **fields), seed=seed, default_dataset=None
    )


def _learner_sets(fd: FederatedDataset) -> Iterator[ArrayDataset]:
    for i in range(fd.num_learners):
        data = fd.learner(i)
        yield data.train
        if data.test is not None:
            yield data.test


def _equal(a: ArrayDataset, b: ArrayDataset) -> bool:
    return bool(np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y))


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_scaling() -> None:
    fd = build("digits", num_learners=5)
    test = fd.central_test()
    assert test is not None and len(test) == 360
    assert test.x.shape == (360, 64) and test.x.dtype == np.float32
    assert test.y.dtype == np.int64
    # Stratified: every class is in the server's test set in its share.
    assert np.bincount(test.y).min() >= 34
    total = sum(len(d) for d in _learner_sets(fd))
    assert total == 1797 - 360
    for part in _learner_sets(fd):
        assert part.x.min() >= 0.0 and part.x.max() <= 1.0


def test_digits_local_test_fraction_and_pooled_train() -> None:
    fd = build("digits", num_learners=4, test_fraction=0.25)
    learners = [fd.learner(i) for i in range(4)]
    for data in learners:
        assert data.test is not None
        share = len(data.train) + len(data.test)
        assert len(data.test) == round(0.25 * share)
    pooled = fd.pooled_train()
    assert len(pooled) == sum(len(d.train) for d in learners)
    rows = {r.tobytes() for d in learners for r in d.train.x}
    assert {r.tobytes() for r in pooled.x} == rows


def test_no_local_test_split_when_fraction_is_zero() -> None:
    fd = build("digits", num_learners=3, test_fraction=0.0)
    assert all(fd.learner(i).test is None for i in range(3))
    assert len(fd.pooled_train()) == 1797 - 360


def test_same_seed_same_data_and_other_seed_other_split() -> None:
    first = build("digits", seed=7, num_learners=3, partition="dirichlet(0.5)")
    second = build("digits", seed=7, num_learners=3, partition="dirichlet(0.5)")
    other = build("digits", seed=8, num_learners=3, partition="dirichlet(0.5)")
    assert all(map(_equal, _learner_sets(first), _learner_sets(second)))
    assert not all(map(_equal, _learner_sets(first), _learner_sets(other)))


def test_digits_rejects_params_and_too_many_learners() -> None:
    with pytest.raises(SpecError, match=r"data\.params") as info:
        build("digits", params={"size": 3})
    assert info.value.field == "data.params"
    with pytest.raises(SpecError, match="num_learners=5000") as info:
        build("digits", num_learners=5000)
    assert info.value.field == "data.num_learners"


def test_infeasible_partition_names_the_field() -> None:
    with pytest.raises(SpecError) as info:
        build("digits", num_learners=100, partition="shards(20)")
    assert info.value.field == "data.partition"


def test_local_split_keeps_a_training_sample() -> None:
    train, test = local_split(1, 0.9, np.random.default_rng(0))
    assert len(train) == 1 and len(test) == 0
    with pytest.raises(ValueError, match="test_fraction"):
        local_split(10, 1.0, np.random.default_rng(0))


def test_learner_index_out_of_range() -> None:
    fd = build("digits", num_learners=2)
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        fd.learner(2)


# ---------------------------------------------------------------- mnist1d


def test_mnist1d_shapes_and_determinism() -> None:
    fd = build("mnist1d", num_learners=4, params=SMALL_MNIST1D)
    test = fd.central_test()
    assert test is not None and test.x.shape == (60, 40) and test.x.dtype == np.float32
    assert sum(len(d) for d in _learner_sets(fd)) == 240
    again = build("mnist1d", num_learners=4, params=SMALL_MNIST1D)
    assert all(map(_equal, _learner_sets(fd), _learner_sets(again)))


def test_mnist1d_is_cached_atomically_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = mnist1d_arrays(SMALL_MNIST1D)
    files = list(cache_dir().glob("mnist1d-*.npz"))
    assert files, "the generated arrays should be cached"
    assert not list(cache_dir().glob("*.tmp")), "no temporary file may be left behind"

    def fail(overrides: Any) -> Any:
        raise AssertionError("a cache hit must not regenerate")

    monkeypatch.setattr(datasets, "_generate_mnist1d", fail)
    cached = mnist1d_arrays(SMALL_MNIST1D)
    for key in ("x", "y", "x_test", "y_test"):
        np.testing.assert_array_equal(arrays[key], cached[key])


def test_mnist1d_cache_key_depends_on_args() -> None:
    mnist1d_arrays({"num_samples": 100, "seed": 1})
    mnist1d_arrays({"num_samples": 100, "seed": 2})
    names = {p.name for p in cache_dir().glob("mnist1d-*.npz")}
    assert len(names) >= 2


def test_corrupt_cache_file_is_regenerated() -> None:
    params = {"num_samples": 100, "seed": 5}
    expected = mnist1d_arrays(params)
    for path in cache_dir().glob("mnist1d-*.npz"):
        path.write_bytes(b"not a zip file")
    again = mnist1d_arrays(params)
    np.testing.assert_array_equal(expected["x"], again["x"])


def test_mnist1d_generation_leaves_global_rngs_alone(tmp_path: Path) -> None:
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    datasets._generate_mnist1d({"num_samples": 50})
    assert np.random.random() == expected_np
    assert random.random() == expected_py


def test_mnist1d_rejects_unknown_params() -> None:
    with pytest.raises(SpecError, match="url") as info:
        build("mnist1d", params={"url": "https://example.com"})
    assert info.value.field == "data.params"


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_naturally_partitioned() -> None:
    fd = build("synthetic", num_learners=7, params={"max_samples": 200})
    assert fd.num_learners == 7
    sizes = []
    for i in range(7):
        data = fd.learner(i)
        assert data.train.x.shape[1] == 60 and data.train.x.dtype == np.float32
        assert data.test is not None
        sizes.append(len(data.train) + len(data.test))
        assert set(np.unique(data.train.y)) <= set(range(10))
    assert all(50 <= s <= 200 for s in sizes)
    test = fd.central_test()
    assert test is not None
    assert len(test) == sum(len(fd.learner(i).test or []) for i in range(7))  # type: ignore[arg-type]
    assert len(fd.pooled_train()) == sum(len(fd.learner(i).train) for i in range(7))


def test_synthetic_seed_param_overrides_run_seed() -> None:
    a = build("synthetic", seed=1, num_learners=3, params={"seed": 9})
    b = build("synthetic", seed=1, num_learners=3, params={"seed": 9})
    c = build("synthetic", seed=1, num_learners=3)
    assert all(map(_equal, _learner_sets(a), _learner_sets(b)))
    assert not _equal(a.pooled_train(), c.pooled_train())


def test_synthetic_refuses_a_partition() -> None:
    with pytest.raises(SpecError, match="naturally partitioned") as info:
        build("synthetic", partition="dirichlet(0.5)")
    assert info.value.field == "data.partition"
    with pytest.raises(SpecError) as info:
        build("synthetic", params={"alpha": -1})
    assert info.value.field == "data.params"


def _devices(**kwargs: Any) -> list[ArrayDataset]:
    return generate_synthetic(
        30, min_samples=200, max_samples=200, rng=np.random.default_rng(0), **kwargs
    )


def test_synthetic_iid_features_follow_the_covariance() -> None:
    pooled = ArrayDataset.concat(_devices(alpha=1.0, beta=1.0, iid=True))
    assert abs(float(pooled.x.mean())) < 0.05
    expected = np.arange(1, 61, dtype=np.float64) ** -1.2
    np.testing.assert_allclose(pooled.x.var(axis=0), expected, rtol=0.15)


def _label_shift(devices: list[ArrayDataset]) -> float:
    # Mean total-variation distance between each device's labels and the pooled labels.
    pooled = np.bincount(np.concatenate([d.y for d in devices]), minlength=10)
    pooled = pooled / pooled.sum()
    shifts = [0.5 * np.abs(np.bincount(d.y, minlength=10) / len(d) - pooled).sum() for d in devices]
    return float(np.mean(shifts))


def test_synthetic_non_iid_devices_differ_more_than_iid_ones() -> None:
    iid = _devices(alpha=1.0, beta=1.0, iid=True)
    skewed = _devices(alpha=1.0, beta=1.0, iid=False)
    assert _label_shift(iid) < 0.15 < 0.3 < _label_shift(skewed)


def test_synthetic_beta_moves_device_feature_means() -> None:
    def spread(beta: float) -> float:
        devices = _devices(alpha=0.0, beta=beta, iid=False)
        return float(np.std([d.x.mean() for d in devices]))

    assert spread(0.0) < 0.5 < 2.0 < spread(5.0)


def test_synthetic_labels_come_from_one_linear_model_when_iid() -> None:
    from sklearn.linear_model import LogisticRegression

    devices = generate_synthetic(
        10,
        alpha=1.0,
        beta=1.0,
        iid=True,
        min_samples=100,
        max_samples=100,
        rng=np.random.default_rng(0),
    )
    pooled = ArrayDataset.concat(devices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is beside the point here
        model = LogisticRegression(C=10.0, max_iter=300).fit(pooled.x, pooled.y)
    assert model.score(pooled.x, pooled.y) > 0.9


def test_synthetic_sizes_follow_the_lognormal_law_and_cap() -> None:
    devices = generate_synthetic(
        400, alpha=0.5, beta=0.5, iid=False, rng=np.random.default_rng(1), max_samples=1000
    )
    sizes = np.array([len(d) for d in devices])
    assert sizes.min() >= 50 and sizes.max() <= 1000
    # lognormal(4, 2) has median e^4 ~ 55, so the median device holds ~50 + 55 samples.
    assert 80 < np.median(sizes) < 140


# ---------------------------------------------------------------- the entry point


def test_registry_names() -> None:
    assert set(DATASETS) == {"digits", "mnist1d", "synthetic"}


def test_default_dataset_is_used_when_spec_names_none() -> None:
    fd = build_federated_dataset(DataSpec(num_learners=2), seed=0, default_dataset="digits")
    assert fd.learner(0).train.x.shape[1] == 64


def test_unknown_dataset_names_field_and_allowed_values() -> None:
    with pytest.raises(SpecError, match="digits, mnist1d, synthetic") as info:
        build("cifar")
    assert info.value.field == "data.dataset"
    assert "cifar" in str(info.value)


def test_missing_dataset_without_default() -> None:
    with pytest.raises(SpecError, match="not set") as info:
        build_federated_dataset(DataSpec(), seed=0, default_dataset=None)
    assert info.value.field == "data.dataset"
