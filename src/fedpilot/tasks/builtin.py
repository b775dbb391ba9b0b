"""Built-in tasks for the demos and benchmarks.

Each takes its ``task.params`` as keyword arguments and checks them, so a spec with a
misspelt or out-of-range parameter fails before any training starts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from sklearn.linear_model import SGDClassifier
from torch import nn

from fedpilot.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_FEATURES
from fedpilot.spec.sections import DataSpec
from fedpilot.tasks.sklearn import SklearnLinearTask
from fedpilot.tasks.torch import TorchTask

__all__ = ["DigitsMLP", "DigitsSGD", "Mnist1dCNN", "SyntheticLogReg"]

_DIGITS_FEATURES = 64
_NUM_CLASSES = 10


def _positive_int(name: str, value: Any) -> int:
    # bool is an int subclass, but `hidden: true` in YAML is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {name}={value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0, got {name}={value!r}")
    return float(value)


class DigitsMLP(TorchTask):
    """A 64 → ``hidden`` → 10 ReLU MLP for scikit-learn's 8x8 digits.

    Args:
        hidden: Width of the hidden layer.
        data: The spec's data section.
        seed: Seed of the initial weights.
    """

    default_dataset: ClassVar[str | None] = "digits"

    def __init__(self, *, hidden: int = 64, data: DataSpec | None = None, seed: int = 0) -> None:
        self.hidden = _positive_int("hidden", hidden)
        super().__init__(data=data, seed=seed, hidden=hidden)

    def build_model(self) -> nn.Module:
        """See :meth:`TorchTask.build_model`."""
        return nn.Sequential(
            nn.Linear(_DIGITS_FEATURES, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, _NUM_CLASSES),
        )


class _Mnist1dNet(nn.Module):
    """Two strided convolutions over the signal, then a linear head."""

    def __init__(self, channels: int, length: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        out_length = _conv_length(_conv_length(length, 5, 2, 2), 3, 2, 1)
        self.head = nn.Linear(channels * out_length, _NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))  # type: ignore[no-any-return]


def _conv_length(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class Mnist1dCNN(TorchTask):
    """A small 1-D CNN for MNIST-1D's signals.

    Args:
        channels: Channels of both convolutions.
        length: Signal length (MNIST-1D's ``final_seq_length``).
        data: The spec's data section.
        seed: Seed of the initial weights.
    """

    default_dataset: ClassVar[str | None] = "mnist1d"

    def __init__(
        self,
        *,
        channels: int = 32,
        length: int = 40,
        data: DataSpec | None = None,
        seed: int = 0,
    ) -> None:
        self.channels = _positive_int("channels", channels)
        self.length = _positive_int("length", length)
        if self.length < 4:
            raise ValueError(f"`length` must be >= 4, got length={length!r}")
        super().__init__(data=data, seed=seed, channels=channels, length=length)

    def build_model(self) -> nn.Module:
        """See :meth:`TorchTask.build_model`."""
        return _Mnist1dNet(self.channels, self.length)


class SyntheticLogReg(TorchTask):
    """Multinomial logistic regression 60 → 10 for FedProx's synthetic data (the model
    the paper trains on it).

    Args:
        data: The spec's data section.
        seed: Seed of the initial weights.
    """

    default_dataset: ClassVar[str | None] = "synthetic"

    def __init__(self, *, data: DataSpec | None = None, seed: int = 0) -> None:
        super().__init__(data=data, seed=seed)

    def build_model(self) -> nn.Module:
        """See :meth:`TorchTask.build_model`."""
        return nn.Linear(SYNTHETIC_FEATURES, SYNTHETIC_CLASSES)


class DigitsSGD(SklearnLinearTask):
    """scikit-learn ``SGDClassifier(loss="log_loss")`` (one-vs-rest logistic regression)
    on the digits.

    Args:
        alpha: L2 regularisation strength.
        data: The spec's data section.
        seed: The run seed.
    """

    default_dataset: ClassVar[str | None] = "digits"

    def __init__(self, *, alpha: float = 1e-4, data: DataSpec | None = None, seed: int = 0) -> None:
        self.alpha = _positive_float("alpha", alpha)
        super().__init__(data=data, seed=seed, alpha=alpha)

    def build_estimator(self) -> SGDClassifier:
        """See :meth:`SklearnLinearTask.build_estimator`."""
        # A constant rate lets the spec's `local.lr` set the step size.
        return SGDClassifier(
            loss="log_loss",
            alpha=self.alpha,
            learning_rate="constant",
            eta0=0.05,
            random_state=self.seed,
        )
