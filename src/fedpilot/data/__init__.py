"""Built-in datasets, partitioners, the federated view of a dataset, and a learner's
own array files (:func:`read_array_data`).

``build_federated_dataset`` is the one entry point: it turns the spec's ``data``
section and the run seed into a :class:`FederatedDataset`, choosing the dataset by
name from :data:`DATASETS`.
"""

from __future__ import annotations

from fedpilot.data._base import (
    ArrayDataset,
    Dataset,
    FederatedDataset,
    LearnerData,
    Partitioner,
)
from fedpilot.data.datasets import (
    DatasetBuilder,
    cache_dir,
    load_digits,
    load_mnist1d,
    load_synthetic,
    mnist1d_arrays,
)
from fedpilot.data.federated import DeviceFederatedDataset, PooledFederatedDataset, local_split
from fedpilot.data.files import read_array_data
from fedpilot.data.partition import (
    DirichletPartitioner,
    IidPartitioner,
    PowerLawPartitioner,
    ShardsPartitioner,
    make_partitioner,
)
from fedpilot.data.synthetic import generate_synthetic
from fedpilot.errors import SpecError
from fedpilot.spec.sections import DataSpec

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "Dataset",
    "DatasetBuilder",
    "DeviceFederatedDataset",
    "DirichletPartitioner",
    "FederatedDataset",
    "IidPartitioner",
    "LearnerData",
    "Partitioner",
    "PooledFederatedDataset",
    "PowerLawPartitioner",
    "ShardsPartitioner",
    "build_federated_dataset",
    "cache_dir",
    "generate_synthetic",
    "load_digits",
    "load_mnist1d",
    "load_synthetic",
    "local_split",
    "make_partitioner",
    "mnist1d_arrays",
    "read_array_data",
]

DATASETS: dict[str, DatasetBuilder] = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "synthetic": load_synthetic,
}
"""Built-in dataset names (the spec's ``data.dataset``) and their builders."""


def build_federated_dataset(
    spec: DataSpec, *, seed: int, default_dataset: str | None
) -> FederatedDataset:
    """Build the federation's data from the spec's ``data`` section.

    Args:
        spec: The data section; ``spec.dataset`` wins over ``default_dataset``.
        seed: The run seed; partition and local splits derive from it.
        default_dataset: The task's own dataset, used when the spec names none.

    Returns:
        The dataset as the federation sees it.

    Raises:
        SpecError: No dataset is named, the name is unknown, or the data section does
            not fit the dataset (``field`` names the culprit).
    """
    name = spec.dataset if spec.dataset is not None else default_dataset
    allowed = ", ".join(sorted(DATASETS))
    if name is None:
        raise SpecError(
            f"`data.dataset` is not set and the task has no default dataset; allowed: {allowed}",
            field="data.dataset",
        )
    builder = DATASETS.get(name)
    if builder is None:
        raise SpecError(
            f"`data.dataset` must be one of {allowed}, got dataset={name!r}",
            field="data.dataset",
        )
    return builder(spec, seed)
