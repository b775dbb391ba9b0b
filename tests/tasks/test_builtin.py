"""Built-in tasks: each learns, and digits-mlp reaches its centralized baseline."""

from __future__ import annotations

import numpy as np
import pytest

from fedpilot.spec.sections import DataSpec
from fedpilot.tasks import (
    BUILTIN_TASKS,
    DigitsMLP,
    DigitsSGD,
    Mnist1dCNN,
    SyntheticLogReg,
    Task,
    TrainSettings,
)

# Small data where generation costs time; every task trains on the pooled data.
CASES: dict[str, tuple[DataSpec, TrainSettings]] = {
    "digits-mlp": (DataSpec(num_learners=4), TrainSettings(epochs=3, lr=0.1)),
    "digits-sgd": (DataSpec(num_learners=4), TrainSettings(epochs=1)),
    "mnist1d-cnn": (
        DataSpec(num_learners=4, params={"num_samples": 1000}),
        TrainSettings(epochs=5, lr=0.05, momentum=0.9),
    ),
    "synthetic-logreg": (
        DataSpec(num_learners=10, params={"max_samples": 300}),
        TrainSettings(epochs=3, lr=0.05),
    ),
}


# Learns in tests/tasks/test_yolo.py, which runs in the detection virtualenv.
DETECTION = {"yolo"}


def test_every_builtin_is_covered() -> None:
    assert set(CASES) == set(BUILTIN_TASKS) - DETECTION


@pytest.mark.parametrize("name", sorted(CASES))
def test_builtin_learns(name: str) -> None:
    data, settings = CASES[name]
    task: Task = BUILTIN_TASKS[name](data=data, seed=0)
    test = task.central_test_data()
    assert test is not None
    before = task.evaluate(test)
    metrics = task.train(task.pooled_train_data(), settings)
    after = task.evaluate(test)
    assert np.isfinite(metrics["loss"])
    assert after["accuracy"] > before["accuracy"] + 0.3, (before, after)
    assert after["loss"] < before["loss"]


@pytest.mark.parametrize(
    ("cls", "dataset"),
    [
        (DigitsMLP, "digits"),
        (DigitsSGD, "digits"),
        (Mnist1dCNN, "mnist1d"),
        (SyntheticLogReg, "synthetic"),
    ],
)
def test_default_datasets(cls: type[Task], dataset: str) -> None:
    assert cls.default_dataset == dataset


def test_params_shape_the_model() -> None:
    assert DigitsMLP(hidden=16).get_weights()[0].shape == (16, 64)
    cnn = Mnist1dCNN(channels=4, length=40).get_weights()
    assert cnn[0].shape == (4, 1, 5) and cnn[-2].shape == (10, 4 * 10)
    assert [w.shape for w in SyntheticLogReg().get_weights()] == [(10, 60), (10,)]
    assert DigitsMLP(hidden=16).params == {"hidden": 16}


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (DigitsMLP, {"hidden": 0}, "hidden"),
        (DigitsMLP, {"hidden": True}, "hidden"),
        (DigitsMLP, {"hidden": 2.5}, "hidden"),
        (Mnist1dCNN, {"channels": -1}, "channels"),
        (Mnist1dCNN, {"length": 2}, "length"),
        (DigitsSGD, {"alpha": 0}, "alpha"),
    ],
)
def test_bad_params_are_value_errors(
    cls: type[Task], params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**params)


@pytest.mark.slow
def test_digits_mlp_centralized_baseline() -> None:
    # The brief's baseline: all training data in one place, 20 epochs of plain SGD,
    # lr 0.05, batch 32. Seeds 0..7 measured 0.933-0.961 (mean 0.946); the mean of
    # three seeds keeps the check robust to one unlucky draw.
    accuracies = []
    for seed in range(3):
        task = DigitsMLP(data=DataSpec(test_fraction=0.0), seed=seed)
        test = task.central_test_data()
        assert test is not None
        task.train(
            task.pooled_train_data(),
            TrainSettings(epochs=20, batch_size=32, lr=0.05, optimizer="sgd", seed=seed),
        )
        accuracies.append(task.evaluate(test)["accuracy"])
    assert np.mean(accuracies) >= 0.93, accuracies
    assert min(accuracies) >= 0.9, accuracies
