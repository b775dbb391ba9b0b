"""scikit-learn adapter for linear classifiers: subclass :class:`SklearnLinearTask`.

Weights are ``[coef_, intercept_]`` (float64, as scikit-learn keeps them). They exist
before any training: the estimator starts at zeros, sized from the federation's data,
so the server can hand out an initial model.

Every learner must agree on the class list, yet a non-IID learner may lack some
classes locally. scikit-learn's ``fit`` takes the classes from ``y``, so the missing
ones are added as zero-weight rows: they fix the model's shape and change no update
(one-vs-rest SGD trains an absent class's classifier on all local samples as negatives,
which is what it should do).
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import log_loss

from fedpilot.data._base import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.spec.sections import DataSpec
from fedpilot.tasks._base import ModelArtifact, Task, TrainSettings, example_rows
from fedpilot.types import Metrics, Weights

if TYPE_CHECKING:
    from fedpilot.transforms._base import GradientTerm

__all__ = ["SklearnLinearTask"]

Floats = npt.NDArray[np.float64]


class SklearnLinearTask(Task):
    """A Task around an ``SGDClassifier`` or a ``LogisticRegression``.

    Training starts from the current weights every call:

    - ``SGDClassifier``: ``settings.epochs`` passes over the data in an order drawn from
      ``settings.seed`` (a fractional epoch uses a prefix of the order). The first pass
      is a warm-started ``fit`` with ``max_iter=1``, which is how scikit-learn accepts
      initial weights; later passes are ``partial_fit`` calls, which keep the learning
      rate schedule running. ``settings.lr`` becomes ``eta0`` unless the estimator uses
      ``learning_rate="optimal"``, which ignores ``eta0``.
    - ``LogisticRegression``: one warm-started ``fit`` that solves the local problem up
      to the estimator's ``max_iter``; ``epochs`` and ``lr`` do not apply.

    ``batch_size``, ``momentum`` and ``weight_decay`` do not apply (regularisation is
    the estimator's own ``alpha`` or ``C``); gradient terms (FedProx, SCAFFOLD) are refused.
    """

    def __init__(self, *, data: DataSpec | None = None, seed: int = 0, **params: Any) -> None:
        super().__init__(data=data, seed=seed, **params)
        self._estimator: Any = None

    @abstractmethod
    def build_estimator(self) -> Any:
        """A fresh, unfitted ``SGDClassifier`` or ``LogisticRegression``."""

    def data_shape(self) -> tuple[int, npt.NDArray[np.generic]]:
        """Number of features and the sorted class labels of the federation's data.

        Override when the data does not come from :meth:`federated_data`.
        """
        federation = self.federated_data()
        pooled = federation.pooled_train()
        central = federation.central_test()
        labels = pooled.y if central is None else np.concatenate([pooled.y, central.y])
        if pooled.x.ndim != 2:
            raise TaskError(
                f"linear scikit-learn tasks need 2-D features, got shape {pooled.x.shape}"
            )
        return int(pooled.x.shape[1]), np.unique(labels)

    @property
    def estimator(self) -> Any:
        """The estimator holding the current weights, built on first use."""
        if self._estimator is None:
            estimator = self.build_estimator()
            if not isinstance(estimator, SGDClassifier | LogisticRegression):
                raise TaskError(
                    "build_estimator() must return an SGDClassifier or a LogisticRegression, "
                    f"got {type(estimator).__name__}"
                )
            n_features, classes = self.data_shape()
            if len(classes) < 2:
                raise TaskError(f"a classifier needs >= 2 classes, got classes={classes!r}")
            rows = 1 if len(classes) == 2 else len(classes)
            estimator.classes_ = classes
            estimator.n_features_in_ = n_features
            estimator.coef_ = np.zeros((rows, n_features))
            estimator.intercept_ = np.zeros(rows)
            self._estimator = estimator
        return self._estimator

    def get_weights(self) -> Weights:
        """Copies of ``[coef_, intercept_]``."""
        estimator = self.estimator
        return [np.array(estimator.coef_, dtype=np.float64), np.array(estimator.intercept_)]

    def set_weights(self, weights: Weights) -> None:
        """Load ``[coef_, intercept_]``.

        Raises:
            TaskError: Not two arrays, or shapes that differ from the model's.
        """
        estimator = self.estimator
        expected = [estimator.coef_.shape, estimator.intercept_.shape]
        got = [np.shape(w) for w in weights]
        if got != expected:
            raise TaskError(
                f"expected weights [coef_, intercept_] with shapes {expected}, got {got}"
            )
        estimator.coef_ = np.array(weights[0], dtype=np.float64)
        estimator.intercept_ = np.array(weights[1], dtype=np.float64)

    def train(
        self,
        data: ArrayDataset,
        settings: TrainSettings,
        *,
        gradient_terms: Sequence[GradientTerm] = (),
    ) -> Metrics:
        """Train from the current weights; returns ``loss`` on ``data`` after training.

        Raises:
            TaskError: ``gradient_terms`` given (FedProx's, SCAFFOLD's), ``data`` is
                empty or ``epochs`` <= 0.
        """
        if gradient_terms:
            names = ", ".join(type(t).__name__ for t in gradient_terms)
            raise TaskError(
                "scikit-learn tasks cannot add terms to their gradients (FedProx's "
                f"proximal term, SCAFFOLD's correction), got gradient_terms=[{names}]; "
                "use the fedavg strategy or a torch task"
            )
        if len(data) == 0:
            raise TaskError("cannot train on an empty dataset")
        if settings.epochs <= 0:
            raise TaskError(f"`epochs` must be > 0, got epochs={settings.epochs}")
        estimator = self.estimator
        x = np.asarray(data.x, dtype=np.float64)
        y = np.asarray(data.y)
        work = clone(estimator)
        work.coef_ = np.array(estimator.coef_)
        work.intercept_ = np.array(estimator.intercept_)
        if isinstance(work, SGDClassifier):
            self._train_sgd(work, x, y, settings)
        else:
            self._train_logistic(work, x, y, settings)
        estimator.coef_ = np.array(work.coef_, dtype=np.float64).reshape(estimator.coef_.shape)
        estimator.intercept_ = np.array(work.intercept_, dtype=np.float64).reshape(
            estimator.intercept_.shape
        )
        # SGDClassifier updates once per sample; a logistic solve is one step for FedNova.
        steps = max(1, round(settings.epochs * len(data))) if isinstance(work, SGDClassifier) else 1
        return {"loss": self.evaluate(data)["loss"], "local_steps": float(steps)}

    def _train_sgd(
        self, work: Any, x: Floats, y: npt.NDArray[Any], settings: TrainSettings
    ) -> None:
        options: dict[str, Any] = {
            "max_iter": 1,
            "tol": None,
            "shuffle": False,
            "warm_start": True,
            "random_state": settings.seed,
        }
        if work.learning_rate != "optimal":
            options["eta0"] = settings.lr
        work.set_params(**options)
        passes = _epoch_orders(len(y), settings.epochs, np.random.default_rng(settings.seed))
        first = passes[0]
        x_all, y_all, weight = self._with_all_classes(x[first], y[first])
        work.fit(x_all, y_all, sample_weight=weight)
        for order in passes[1:]:
            work.partial_fit(x[order], y[order])

    def _train_logistic(
        self, work: Any, x: Floats, y: npt.NDArray[Any], settings: TrainSettings
    ) -> None:
        work.set_params(warm_start=True, random_state=settings.seed)
        with warnings.catch_warnings():
            # A few solver iterations per round are intended, not a failure to converge.
            warnings.simplefilter("ignore", ConvergenceWarning)
            x_all, y_all, weight = self._with_all_classes(x, y)
            work.fit(x_all, y_all, sample_weight=weight)

    def _with_all_classes(
        self, x: Floats, y: npt.NDArray[Any]
    ) -> tuple[Floats, npt.NDArray[Any], Floats]:
        classes = self.estimator.classes_
        missing = np.setdiff1d(classes, y)
        weight = np.ones(len(y))
        if len(missing) == 0:
            return x, y, weight
        filler = np.zeros((len(missing), x.shape[1]))
        return (
            np.concatenate([x, filler]),
            np.concatenate([y, missing.astype(y.dtype)]),
            np.concatenate([weight, np.zeros(len(missing))]),
        )

    def evaluate(self, data: ArrayDataset) -> Metrics:
        """``accuracy`` and ``loss``: log loss when the estimator gives probabilities,
        else the 0-1 loss.

        Raises:
            TaskError: ``data`` is empty.
        """
        if len(data) == 0:
            raise TaskError("cannot evaluate on an empty dataset")
        estimator = self.estimator
        x = np.asarray(data.x, dtype=np.float64)
        y = np.asarray(data.y)
        accuracy = float(np.mean(estimator.predict(x) == y))
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(x)
            loss = float(log_loss(y, proba, labels=estimator.classes_))
        else:
            loss = 1.0 - accuracy
        return {"loss": loss, "accuracy": accuracy}

    def model_artifact(self) -> ModelArtifact:
        """The estimator, for MLflow's sklearn flavor, with a few float64 rows of the
        server-held data as its input example and their predicted labels as its output."""
        rows = example_rows(self)
        if rows is None:
            return ModelArtifact("sklearn", self.estimator)
        example = np.asarray(rows, dtype=np.float64)
        labels = self.estimator.predict(example)
        return ModelArtifact(
            "sklearn", self.estimator, input_example=example, output_example=labels
        )


def _epoch_orders(n: int, epochs: float, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    # One permutation per whole epoch, plus a prefix of one more for the fraction.
    whole = math.floor(epochs)
    orders = [rng.permutation(n) for _ in range(whole)]
    rest = round((epochs - whole) * n)
    if rest > 0 or not orders:
        orders.append(rng.permutation(n)[: max(rest, 1)])
    return orders
