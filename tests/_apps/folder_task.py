"""A user's Task whose data is folders of small files, read by the task itself.

Laid out as an object-detection data set is (Ultralytics YOLO's ``images/`` and
``labels/``): one ``images/<id>.npy`` feature vector and one ``labels/<id>.txt`` class
per example. A learner's directory holds ``train/`` and optionally ``test/`` in that
layout. The model is numpy softmax regression, trained from a loader that reads the
files batch by batch; the final model is logged to MLflow as a ``pyfunc`` model.

With ``root`` set, learner ``i`` of a simulated federation reads ``<root>/learner-<i>``
and the server's test set is ``<root>/server`` (if present): per-learner directories
in a real local federation, without any built-in dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from fedpilot.data import LearnerData
from fedpilot.errors import TaskError
from fedpilot.tasks import ModelArtifact, Task, TrainSettings
from fedpilot.types import Metrics, Weights


def write_folder(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write examples ``x[k]``, ``y[k]`` as ``images/<k>.npy`` and ``labels/<k>.txt``."""
    (path / "images").mkdir(parents=True)
    (path / "labels").mkdir()
    for k, (features, label) in enumerate(zip(x, y, strict=True)):
        np.save(path / "images" / f"{k:04d}.npy", features.astype(np.float32))
        (path / "labels" / f"{k:04d}.txt").write_text(f"{int(label)}\n")


def blobs(n: int, seed: int, features: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs, one per class."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0.0, 3.0, (classes, features))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(0.0, 0.5, (n, features)), y


@dataclass(frozen=True)
class FolderDataset:
    """Examples as files; nothing is read until a batch is drawn."""

    images: tuple[Path, ...]
    labels: tuple[Path, ...]

    @classmethod
    def read(cls, path: Path) -> FolderDataset:
        images = tuple(sorted((path / "images").glob("*.npy")))
        if not images:
            raise TaskError(f"no images/*.npy under {str(path)!r}")
        labels = tuple(path / "labels" / f"{image.stem}.txt" for image in images)
        missing = [str(p) for p in labels if not p.is_file()]
        if missing:
            raise TaskError(f"images without labels under {str(path)!r}: {missing[:3]}")
        return cls(images, labels)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, size: int, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The examples in ``order``, ``size`` at a time, read from disk."""
        for start in range(0, len(order), size):
            chosen = order[start : start + size]
            x = np.stack([np.load(self.images[i]) for i in chosen])
            y = np.array([int(self.labels[i].read_text()) for i in chosen])
            yield x, y


class SoftmaxModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """The trained model as MLflow's pyfunc: features in, class indices out."""

    def __init__(self, w: np.ndarray, b: np.ndarray) -> None:
        self.w, self.b = w, b

    # No type hints: MLflow would read them as an input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return np.argmax(np.asarray(model_input, dtype=np.float32) @ self.w + self.b, axis=1)


def _proba(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = x @ w + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class FolderTask(Task):
    """Softmax regression on a folder of ``.npy`` examples (see the module docstring)."""

    def __init__(
        self, *, root: str | None = None, features: int = 4, classes: int = 3, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root) if root is not None else None
        self.w = np.zeros((features, classes), np.float32)
        self.b = np.zeros(classes, np.float32)

    def get_weights(self) -> Weights:
        return [self.w.copy(), self.b.copy()]

    def set_weights(self, weights: Weights) -> None:
        self.w, self.b = (np.array(a, dtype=np.float32) for a in weights)

    def load_data(self, source: Path) -> LearnerData[FolderDataset]:
        if not (source / "train").is_dir():
            raise TaskError(f"the learner's data {str(source)!r} must hold a train/ folder")
        test = source / "test"
        return LearnerData(
            FolderDataset.read(source / "train"),
            FolderDataset.read(test) if test.is_dir() else None,
        )

    def learner_data(self, index: int) -> LearnerData[FolderDataset]:
        if self.root is None:
            raise TaskError("FolderTask serves partitions only with its `root` param set")
        return self.load_data(self.root / f"learner-{index}")

    def central_test_data(self) -> FolderDataset | None:
        server = None if self.root is None else self.root / "server"
        return FolderDataset.read(server) if server is not None and server.is_dir() else None

    def train(self, data: FolderDataset, settings: TrainSettings) -> Metrics:
        rng = np.random.default_rng(settings.seed)
        losses = []
        for _ in range(max(1, round(settings.epochs))):
            for x, y in data.batches(settings.batch_size, rng.permutation(len(data))):
                p = _proba(self.w, self.b, x)
                losses.append(float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()))
                grad = p - np.eye(self.w.shape[1], dtype=np.float32)[y]
                self.w -= settings.lr * (x.T @ grad) / len(y)
                self.b -= settings.lr * grad.mean(axis=0)
        return {"loss": float(np.mean(losses))}

    def evaluate(self, data: FolderDataset) -> Metrics:
        loss = correct = 0.0
        for x, y in data.batches(256, np.arange(len(data))):
            p = _proba(self.w, self.b, x)
            loss += float(-np.log(p[np.arange(len(y)), y] + 1e-12).sum())
            correct += float((p.argmax(axis=1) == y).sum())
        return {"loss": loss / len(data), "accuracy": correct / len(data)}

    def model_artifact(self) -> ModelArtifact:
        return ModelArtifact("pyfunc", SoftmaxModel(self.w.copy(), self.b.copy()))


class HookLoggedTask(FolderTask):
    """Logs its model itself through the Task's ``log_model`` hook."""

    def log_model(self, *, name: str, model_id: str, run_id: str, step: int) -> bool:
        del run_id  # the LoggedModel model_id already names its run
        mlflow.pyfunc.log_model(
            name=name,
            python_model=SoftmaxModel(self.w.copy(), self.b.copy()),
            model_id=model_id,
            step=step,
            metadata={"logged_by": "HookLoggedTask.log_model"},
            pip_requirements=["numpy"],
        )
        return True


class UnknownFlavorTask(FolderTask):
    def model_artifact(self) -> ModelArtifact:
        return ModelArtifact("no_such_flavor", self.w)
