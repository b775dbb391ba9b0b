"""Built-in datasets: ``digits``, ``mnist1d`` and ``synthetic``.

Each builder turns the spec's data section and the run seed into a
:class:`~fedpilot.data._base.FederatedDataset`. Nothing here downloads: digits ships
with scikit-learn, MNIST-1D is generated locally by the ``mnist1d`` package (and cached,
because generating it takes seconds) and the synthetic data is drawn on the spot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.data._base import ArrayDataset, FederatedDataset
from fedpilot.data.federated import DeviceFederatedDataset, PooledFederatedDataset
from fedpilot.data.partition import make_partitioner
from fedpilot.data.synthetic import generate_synthetic
from fedpilot.errors import SpecError
from fedpilot.spec.sections import DataSpec, IidPartition
from fedpilot.types import derive_rng, derive_seed

__all__ = [
    "DatasetBuilder",
    "cache_dir",
    "load_digits",
    "load_mnist1d",
    "load_synthetic",
    "mnist1d_arrays",
]

DatasetBuilder = Callable[[DataSpec, int], FederatedDataset]
"""Builds a dataset from the spec's data section and the run seed."""

Arrays = dict[str, npt.NDArray[np.generic]]

# The mnist1d generator's knobs a spec may set; `url` is left out on purpose, since
# fedpilot never downloads the published pickle.
_MNIST1D_PARAMS = frozenset(
    {
        "num_samples",
        "train_split",
        "template_len",
        "padding",
        "scale_coeff",
        "max_translation",
        "corr_noise_scale",
        "iid_noise_scale",
        "shear_scale",
        "shuffle_seq",
        "final_seq_length",
        "seed",
    }
)
_SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "alpha": 1.0,
    "beta": 1.0,
    "iid": False,
    "min_samples": 50,
    "max_samples": 1000,
    "seed": None,
}


def _check_params(dataset: str, params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) if allowed else "none"
        raise SpecError(
            f"`data.params` has unknown key(s) {unknown} for dataset {dataset!r}; "
            f"allowed: {allowed_text}",
            field="data.params",
        )


def _pooled(
    name: str, spec: DataSpec, seed: int, train: ArrayDataset, test: ArrayDataset | None
) -> FederatedDataset:
    if spec.num_learners > len(train):
        raise SpecError(
            f"`data.num_learners` must be <= the {len(train)} training samples of "
            f"{name!r}, got num_learners={spec.num_learners}",
            field="data.num_learners",
        )
    try:
        return PooledFederatedDataset(
            train,
            test,
            partitioner=make_partitioner(spec.partition),
            num_learners=spec.num_learners,
            test_fraction=spec.test_fraction,
            seed=seed,
        )
    except ValueError as exc:
        raise SpecError(f"`data.partition`: {exc}", field="data.partition") from exc


# ---------------------------------------------------------------- digits


def load_digits(spec: DataSpec, seed: int) -> FederatedDataset:
    """scikit-learn's 8x8 digits (1,797 samples, 64 features scaled to [0, 1], 10 classes).

    A stratified 80/20 split seeded by ``seed`` gives the server-held test set; the
    80% are partitioned among learners.

    Args:
        spec: The data section; ``params`` must be empty.
        seed: The run seed.

    Returns:
        The federated digits dataset.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    _check_params("digits", spec.params, frozenset())
    bunch = sk_load_digits()
    # Pixel intensities are 0..16: scaling to [0, 1] keeps SGD at lr ~0.05 stable.
    x = (np.asarray(bunch.data) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target).astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)),
        test_size=0.2,
        stratify=y,
        random_state=derive_seed(seed, 0, "data:digits-split"),
    )
    full = ArrayDataset(x, y)
    return _pooled(
        "digits", spec, seed, full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx))
    )


# ---------------------------------------------------------------- mnist1d


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$FEDPILOT_CACHE_DIR`` or ``~/.cache/fedpilot``."""
    configured = os.environ.get("FEDPILOT_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "fedpilot"


def _read_npz(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        # A truncated or foreign file: regenerate and overwrite it.
        return None


def _write_npz_atomically(path: Path, arrays: Arrays) -> None:
    # Write beside the target, then rename: concurrent workers see the whole file or none.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _generate_mnist1d(overrides: Mapping[str, Any]) -> Arrays:
    from mnist1d.data import get_dataset_args, make_dataset

    args = {**get_dataset_args(as_dict=True), **overrides}
    # make_dataset seeds the global `random` and `numpy.random` states; put them back
    # so generating data does not change anyone else's random stream.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(raw["x"], dtype=np.float32),
        "y": np.asarray(raw["y"], dtype=np.int64),
        "x_test": np.asarray(raw["x_test"], dtype=np.float32),
        "y_test": np.asarray(raw["y_test"], dtype=np.int64),
    }


def mnist1d_arrays(overrides: Mapping[str, Any] | None = None) -> Arrays:
    """MNIST-1D's train and test arrays (``x``, ``y``, ``x_test``, ``y_test``), cached.

    The cache file is keyed by the ``mnist1d`` package version and the overrides, so a
    changed knob or an upgraded generator never reads stale data.

    Args:
        overrides: Generator arguments replacing ``mnist1d.data.get_dataset_args()``'s.

    Returns:
        float32 signals (n, final_seq_length) and int64 labels.
    """
    overrides = dict(overrides or {})
    key_source = json.dumps(
        {"mnist1d": metadata.version("mnist1d"), "args": overrides}, sort_keys=True
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    cached = _read_npz(path)
    if cached is not None:
        return cached
    arrays = _generate_mnist1d(overrides)
    # A read-only home only costs regeneration next time.
    with contextlib.suppress(OSError):
        _write_npz_atomically(path, arrays)
    return arrays


def load_mnist1d(spec: DataSpec, seed: int) -> FederatedDataset:
    """MNIST-1D (Greydanus, 2020): 40-sample 1-D signals of 10 digit templates.

    Generated locally with the package's default arguments (5,000 samples, its own
    seed 42, so every run sees the canonical dataset); ``data.params`` may override
    any generator argument. The generator's own 80/20 split gives the server-held test
    set.

    Args:
        spec: The data section.
        seed: The run seed (partition and local splits).

    Returns:
        The federated MNIST-1D dataset.
    """
    _check_params("mnist1d", spec.params, _MNIST1D_PARAMS)
    try:
        arrays = mnist1d_arrays(spec.params)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"`data.params` for 'mnist1d': {exc}", field="data.params") from exc
    train = ArrayDataset(arrays["x"], arrays["y"])
    test = ArrayDataset(arrays["x_test"], arrays["y_test"])
    return _pooled("mnist1d", spec, seed, train, test if len(test) else None)


# ---------------------------------------------------------------- synthetic


def load_synthetic(spec: DataSpec, seed: int) -> FederatedDataset:
    """FedProx's Synthetic(alpha, beta): device ``k`` is learner ``k``.

    ``data.params``: ``alpha`` and ``beta`` (default 1.0), ``iid`` (default false),
    ``min_samples`` (50) and ``max_samples`` (1000) per device, and ``seed`` (default:
    the run seed). The partition must be ``iid``: the data come partitioned.

    Args:
        spec: The data section.
        seed: The run seed.

    Returns:
        The federated synthetic dataset; its central test set is the union of the
        devices' test parts.
    """
    _check_params("synthetic", spec.params, frozenset(_SYNTHETIC_DEFAULTS))
    if not isinstance(spec.partition, IidPartition):
        raise SpecError(
            "dataset 'synthetic' is naturally partitioned (device k is learner k), so "
            f"`data.partition` must be iid, got partition={spec.partition.kind!r}",
            field="data.partition",
        )
    params = {**_SYNTHETIC_DEFAULTS, **spec.params}
    data_seed = seed if params["seed"] is None else int(params["seed"])
    try:
        devices = generate_synthetic(
            spec.num_learners,
            alpha=float(params["alpha"]),
            beta=float(params["beta"]),
            iid=bool(params["iid"]),
            min_samples=int(params["min_samples"]),
            max_samples=int(params["max_samples"]),
            rng=derive_rng(data_seed, 0, "data:synthetic"),
        )
    except (TypeError, ValueError) as exc:
        raise SpecError(f"`data.params` for 'synthetic': {exc}", field="data.params") from exc
    return DeviceFederatedDataset(devices, test_fraction=spec.test_fraction, seed=seed)
