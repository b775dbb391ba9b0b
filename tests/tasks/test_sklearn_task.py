"""The scikit-learn adapter: zero-initialised weights, warm starts, missing classes."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC

from fedpilot.data import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.spec.sections import DataSpec
from fedpilot.tasks import DigitsSGD, SklearnLinearTask, TrainSettings
from fedpilot.transforms.proximal import ProximalTerm

DIGITS = DataSpec(num_learners=5, partition="shards(2)")  # type: ignore[arg-type]


class DigitsLogReg(SklearnLinearTask):
    default_dataset = "digits"

    def build_estimator(self) -> Any:
        return LogisticRegression(max_iter=20)


class BinaryHinge(SklearnLinearTask):
    """Binary, no probabilities, and a data shape that does not come from a dataset."""

    def data_shape(self) -> tuple[int, npt.NDArray[np.generic]]:
        return 2, np.array([0, 1])

    def build_estimator(self) -> Any:
        return SGDClassifier(loss="hinge", learning_rate="constant", eta0=0.1)


class NotLinear(SklearnLinearTask):
    default_dataset = "digits"

    def build_estimator(self) -> Any:
        return LinearSVC()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def line(n: int = 200, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 2))
    return ArrayDataset(x, (x[:, 0] + x[:, 1] > 0).astype(np.int64))


@pytest.mark.parametrize("cls", [DigitsSGD, DigitsLogReg])
def test_weights_exist_before_training_as_zeros(cls: type[SklearnLinearTask]) -> None:
    task = cls(data=DIGITS)
    coef, intercept = task.get_weights()
    assert coef.shape == (10, 64) and intercept.shape == (10,)
    assert not coef.any() and not intercept.any()
    assert task.evaluate(task.central_test_data())["accuracy"] == pytest.approx(0.1, abs=0.01)  # type: ignore[arg-type]


def test_binary_weights_have_one_row() -> None:
    coef, intercept = BinaryHinge().get_weights()
    assert coef.shape == (1, 2) and intercept.shape == (1,)


@pytest.mark.parametrize("cls", [DigitsSGD, DigitsLogReg])
def test_weights_round_trip(cls: type[SklearnLinearTask]) -> None:
    source, target = cls(data=DIGITS), cls(data=DIGITS)
    source.train(source.pooled_train_data(), TrainSettings(epochs=1))
    target.set_weights(source.get_weights())
    assert _same(target.get_weights(), source.get_weights())
    test = source.central_test_data()
    assert test is not None
    assert target.evaluate(test) == source.evaluate(test)


def test_set_weights_checks_shapes() -> None:
    task = DigitsSGD(data=DIGITS)
    coef, intercept = task.get_weights()
    with pytest.raises(TaskError, match=r"\[coef_, intercept_\]"):
        task.set_weights([coef])
    with pytest.raises(TaskError, match=r"\(10, 64\)"):
        task.set_weights([coef[:, :3], intercept])


@pytest.mark.parametrize("cls", [DigitsSGD, DigitsLogReg])
def test_training_improves_accuracy(cls: type[SklearnLinearTask]) -> None:
    task = cls(data=DIGITS)
    test = task.central_test_data()
    assert test is not None
    before = task.evaluate(test)["accuracy"]
    metrics = task.train(task.pooled_train_data(), TrainSettings(epochs=2, lr=0.05, seed=1))
    after = task.evaluate(test)
    assert set(metrics) == {"loss", "local_steps"} and metrics["loss"] > 0
    assert after["accuracy"] > before + 0.6
    assert set(after) == {"loss", "accuracy"}


def test_sgd_training_is_deterministic_for_a_seed() -> None:
    runs = []
    for seed in (3, 3, 4):
        task = DigitsSGD(data=DIGITS)
        task.train(task.pooled_train_data(), TrainSettings(epochs=1.5, seed=seed))
        runs.append(task.get_weights())
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_training_starts_from_the_given_weights() -> None:
    trained = DigitsSGD(data=DIGITS)
    trained.train(trained.pooled_train_data(), TrainSettings(epochs=2))
    learner = DigitsSGD(data=DIGITS)
    learner.set_weights(trained.get_weights())
    # A tiny step from good weights stays good; from zeros it could not be.
    learner.train(learner.learner_data(0).train, TrainSettings(epochs=0.1, lr=1e-6))
    test = trained.central_test_data()
    assert test is not None
    assert learner.evaluate(test)["accuracy"] > 0.85


@pytest.mark.parametrize("cls", [DigitsSGD, DigitsLogReg])
def test_learner_missing_classes_keeps_the_global_shape(cls: type[SklearnLinearTask]) -> None:
    task = cls(data=DIGITS)
    local = task.learner_data(0).train
    assert len(np.unique(local.y)) < 10  # shards(2): a couple of labels per learner
    task.train(local, TrainSettings(epochs=1))
    coef, intercept = task.get_weights()
    assert coef.shape == (10, 64) and intercept.shape == (10,)
    np.testing.assert_array_equal(task.estimator.classes_, np.arange(10))


def test_fractional_epochs_change_the_result() -> None:
    half, whole = DigitsSGD(data=DIGITS), DigitsSGD(data=DIGITS)
    data = half.pooled_train_data()
    half.train(data, TrainSettings(epochs=0.5))
    whole.train(data, TrainSettings(epochs=1.0))
    assert not _same(half.get_weights(), whole.get_weights())


def test_gradient_terms_are_refused() -> None:
    task = DigitsSGD(data=DIGITS)
    with pytest.raises(TaskError, match=r"gradient_terms=\[ProximalTerm\]"):
        task.train(task.pooled_train_data(), TrainSettings(), gradient_terms=[ProximalTerm(0.1)])


def test_zero_one_loss_without_probabilities() -> None:
    task = BinaryHinge()
    data = line()
    task.train(data, TrainSettings(epochs=3))
    metrics = task.evaluate(data)
    assert metrics["accuracy"] > 0.9
    assert metrics["loss"] == pytest.approx(1 - metrics["accuracy"])


def test_only_linear_classifiers_are_accepted() -> None:
    with pytest.raises(TaskError, match="LinearSVC"):
        NotLinear(data=DIGITS).get_weights()


def test_empty_data_is_an_error() -> None:
    empty = ArrayDataset(np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    with pytest.raises(TaskError, match="empty"):
        BinaryHinge().train(empty, TrainSettings())
    with pytest.raises(TaskError, match="empty"):
        BinaryHinge().evaluate(empty)


def test_model_artifact_predicts() -> None:
    task = DigitsSGD(data=DIGITS)
    task.train(task.pooled_train_data(), TrainSettings(epochs=1))
    artifact = task.model_artifact()
    assert artifact.flavor == "sklearn"
    test = task.central_test_data()
    assert test is not None
    assert artifact.model.predict(test.x).shape == (len(test),)
