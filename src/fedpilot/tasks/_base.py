"""The Task contract: the user's model and local training, knowing nothing of rounds."""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from fedpilot.data._base import ArrayDataset, FederatedDataset, LearnerData
from fedpilot.data.files import read_array_data
from fedpilot.spec.sections import DataSpec, LocalSpec
from fedpilot.types import Metrics, Weights, derive_rng

if TYPE_CHECKING:
    from fedpilot.transforms._base import GradientTerm

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """How one local training call runs. Built from the spec's ``local`` section and the
    instruction's config; ``seed`` makes the call reproducible.
    """

    epochs: float = 1.0
    batch_size: int = 32
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    task_params: Mapping[str, float] = field(default_factory=dict)
    """Values of the task's own numeric params that this call uses instead of the spec's
    (learner-level tuning of ``task.params.<name>``; config keys ``task.<name>``). A task
    that has no such param raises ``TaskError``."""

    @classmethod
    def from_local(cls, local: LocalSpec, *, seed: int) -> TrainSettings:
        """The settings a spec's ``local`` section describes, for one call's ``seed``."""
        return cls(
            epochs=local.epochs,
            batch_size=local.batch_size,
            optimizer=local.optimizer,
            lr=local.lr,
            momentum=local.momentum,
            weight_decay=local.weight_decay,
            seed=seed,
        )


@dataclass(frozen=True)
class ModelArtifact:
    """The trained model in a form MLflow can log.

    It is logged as ``mlflow.<flavor>.log_model(model, name=..., **options)``; for
    ``pyfunc``, whose ``log_model`` takes no positional model, ``model`` (an
    ``mlflow.pyfunc.PythonModel``) goes in as ``python_model``.
    """

    flavor: str
    """An MLflow flavor module: ``pytorch``, ``sklearn``, ``onnx``, ``pyfunc``, ..."""
    model: Any
    options: Mapping[str, Any] = field(default_factory=dict)
    """More keyword arguments of the flavor's ``log_model`` (``signature``,
    ``pip_requirements``, ...); they win over fedpilot's defaults for the flavor."""
    input_example: Any | None = None
    """A few rows the model takes (a numpy array), logged as its input example."""
    output_example: Any | None = None
    """What the model's pyfunc ``predict`` gives for :attr:`input_example`. With both, the
    model is logged with the signature MLflow infers from them (a tensor spec naming
    dtype and shape), which ``mlflow models serve`` and ``fedpilot serve`` check
    requests against; without, it has no signature."""


class Task(ABC):
    """A model plus how to train and evaluate it on local data.

    Subclasses get ``data`` (the spec's data section), ``seed`` and their own ``params``
    (the spec's ``task.params``) as keyword arguments.

    Data: a Task trains and evaluates on whatever dataset type it loads, any
    :class:`~fedpilot.data.Dataset` (``len()`` is its number of examples). Built-in
    tasks use :class:`~fedpilot.data.ArrayDataset`. A learner's data is either its
    share of the spec's dataset (:meth:`learner_data`: the built-in datasets unless a
    subclass overrides it or :meth:`federated_data`) or its own files
    (:meth:`load_data`: an .npz file or a directory of .npy files unless a subclass
    reads its own layout, e.g. a folder of images and label files).
    """

    default_dataset: ClassVar[str | None] = None
    learner_tunable: ClassVar[frozenset[str]] = frozenset()
    """The params a learner may set per training call (``TrainSettings.task_params``)."""

    def __init__(self, *, data: DataSpec | None = None, seed: int = 0, **params: Any) -> None:
        self.data_spec = data if data is not None else DataSpec()
        self.seed = seed
        self.params = params

    # -- model -----------------------------------------------------------------------

    @abstractmethod
    def get_weights(self) -> Weights:
        """The model's parameters (copies the caller may keep)."""

    @abstractmethod
    def set_weights(self, weights: Weights) -> None:
        """Load parameters; shapes match :meth:`get_weights`."""

    # ``data`` is typed Any so that a subclass can name its own dataset type (mypy
    # would refuse narrowing a Dataset parameter); it is what this task's
    # learner_data / load_data return.

    @abstractmethod
    def train(
        self, data: Any, settings: TrainSettings, *, gradient_terms: Sequence[GradientTerm] = ()
    ) -> Metrics:
        """Train in place on ``data`` (a :class:`~fedpilot.data.Dataset` this task
        loaded); return metrics with at least ``loss``.

        ``gradient_terms`` (FedProx's proximal term, SCAFFOLD's correction) are added to
        every parameter's gradient at every step; the learner passes them only when
        there are some, and a task that cannot apply them raises ``TaskError``.
        """

    @abstractmethod
    def evaluate(self, data: Any) -> Metrics:
        """Metrics of the current model on ``data`` (``loss``, and ``accuracy`` if it applies)."""

    def model_artifact(self) -> ModelArtifact:
        """The current model and the MLflow flavor that logs it.

        Implement this or :meth:`log_model`; with neither, only the raw weights are logged.
        """
        raise NotImplementedError(
            f"{type(self).__name__} implements neither model_artifact() nor log_model()"
        )

    def input_example(self, rows: int = 5) -> Any | None:
        """A few rows of the server-held validation (else test) features, to log with the
        model as its input example and signature; None when the task has none.

        Only the built-in data's :class:`~fedpilot.data.ArrayDataset` gives rows; a task
        reading other data overrides this (or logs its model without a signature).
        """
        held = self.validation_data()
        if held is None:
            held = self.central_test_data()
        if not isinstance(held, ArrayDataset) or len(held) == 0:
            return None
        return held.x[:rows]

    def log_model(self, *, name: str, model_id: str, run_id: str, step: int) -> None:
        """Optional hook: override to log the current model to MLflow your own way;
        fedpilot then calls it instead of logging :meth:`model_artifact`.

        The MLflow callback calls it with the final weights loaded, the run's tracking
        URI set and a LoggedModel ``model_id`` of MLflow run ``run_id`` created; pass
        them on to MLflow (``mlflow.<flavor>.log_model(..., name=name,
        model_id=model_id, step=step)``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not log its model itself")

    # -- data ------------------------------------------------------------------------

    def load_data(self, source: Path) -> LearnerData[Any]:
        """A learner's own data at ``source`` (``fedpilot learner --data``, a Flower
        node's ``data-path``), read once per process.

        The default reads arrays (:func:`~fedpilot.data.read_array_data`): an .npz
        file holding ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``, or
        a directory holding those arrays as ``x_train.npy``, ``y_train.npy``
        (optionally ``x_test.npy``, ``y_test.npy``). Override to read another layout
        into this task's own dataset type.

        Raises:
            TaskError: ``source`` is missing, unreadable or not in the layout; the
                message names the path and what is missing.
        """
        return read_array_data(source)

    def federated_data(self) -> FederatedDataset:
        """The federation's data; built once per Task from the built-in datasets."""
        cached: FederatedDataset | None = self.__dict__.get("_federated_data")
        if cached is None:
            cached = _builtin_federated_data(self.data_spec, self.seed, self.default_dataset)
            self.__dict__["_federated_data"] = cached
        return cached

    def learner_data(self, index: int) -> LearnerData[Any]:
        """Learner ``index``'s share of the spec's dataset."""
        return self.federated_data().learner(index)

    def central_test_data(self) -> Any | None:
        """The server-held test set (without the validation split, if any), or None."""
        return self._server_split()[1]

    def validation_data(self) -> Any | None:
        """The server-held validation split (``data.server_validation`` examples)."""
        if self.data_spec.server_validation == 0:
            # Without touching the data: a task with data of its own needs no override.
            return None
        return self._server_split()[0]

    def _server_split(self) -> tuple[ArrayDataset | None, ArrayDataset | None]:
        cached: tuple[ArrayDataset | None, ArrayDataset | None] | None = self.__dict__.get(
            "_server_split_cache"
        )
        if cached is None:
            test = self.federated_data().central_test()
            wanted = self.data_spec.server_validation
            if test is None or wanted == 0 or len(test) < 2:
                cached = (None, test)
            else:
                order = derive_rng(self.seed, 0, "server-validation").permutation(len(test))
                size = min(wanted, len(test) - 1)
                cached = (test.subset(order[:size]), test.subset(order[size:]))
            self.__dict__["_server_split_cache"] = cached
        return cached

    def pooled_train_data(self) -> Any:
        """Every learner's training data in one set (the centralized baseline's)."""
        return self.federated_data().pooled_train()


def example_rows(task: Task) -> Any | None:
    """``task.input_example()``, or None when the task cannot give one here: the example
    is optional, and a task whose data the server cannot read is logged without it."""
    try:
        return task.input_example()
    except Exception as exc:  # any failure of the task's data code: log without an example
        _logger.info("no input example for %s's model: %s", type(task).__name__, exc)
        return None


def _builtin_federated_data(
    spec: DataSpec, seed: int, default_dataset: str | None
) -> FederatedDataset:
    # The spec holds dicts (unhashable), so cache on its JSON form.
    return _cached_federated_data(spec.model_dump_json(), seed, default_dataset)


@functools.lru_cache(maxsize=8)
def _cached_federated_data(
    spec_json: str, seed: int, default_dataset: str | None
) -> FederatedDataset:
    # Cached per process: a worker serving many learners builds the partition once.
    from fedpilot.data import build_federated_dataset

    spec = DataSpec.model_validate_json(spec_json)
    return build_federated_dataset(spec, seed=seed, default_dataset=default_dataset)
