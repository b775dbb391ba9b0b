"""The ``yolo`` task: an Ultralytics YOLO detector trained across learners."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from fedpilot.data._base import LearnerData
from fedpilot.data.yolo import DetectionImages, read_yolo_dataset
from fedpilot.errors import TaskError
from fedpilot.spec.sections import DataSpec
from fedpilot.tasks._base import ModelArtifact, Task, TrainSettings
from fedpilot.tasks.yolo import _ultralytics
from fedpilot.tasks.yolo.oversample import Oversampling, augmenter, training_order
from fedpilot.types import Metrics, Weights

if TYPE_CHECKING:
    from fedpilot.transforms._base import GradientTerm

__all__ = ["HYPERPARAMETERS", "YoloTask"]

HYPERPARAMETERS: dict[str, tuple[float, float, float]] = {
    # name: (default, lowest, highest); Ultralytics' meaning of each
    "warmup_epochs": (0.0, 0.0, 10.0),
    "lrf": (0.01, 0.0, 1.0),
    "hsv_h": (0.015, 0.0, 1.0),
    "mosaic": (1.0, 0.0, 1.0),
    "mixup": (0.0, 0.0, 1.0),
    "degrees": (0.0, 0.0, 180.0),
    "scale": (0.5, 0.0, 0.99),
}
"""The augmentation and schedule settings a spec (and a learner's tuning) may set. The
other three of the seed system's nine, lr0, momentum and weight_decay, are the spec's
``local.lr``, ``local.momentum`` and ``local.weight_decay``."""


class YoloTask(Task):
    """An Ultralytics YOLO detector (README "Object detection"; examples/driving-yolo.yaml).

    Args:
        model: An Ultralytics detection model YAML (``yolov8n.yaml``) or a path to one;
            built from ``seed``, or loaded from ``weights``.
        weights: A local Ultralytics checkpoint (``.pt``) to start from; nothing is
            ever downloaded.
        root: A folder as ``fedpilot data make-driving`` writes it: learner ``i`` of a
            simulated federation reads ``<root>/learner-<i>``, and the server validates
            on ``<root>/val`` unless ``val`` names another set.
        val: The server's validation set: a ``data.yaml`` or a folder holding one; its
            ``val`` images are used.
        classes: The class names, when neither ``root`` nor ``val`` can be read (a
            learner on its own machine); otherwise read from the data.
        imgsz: Training and validation image size (a multiple of 32).
        oversample: Class-imbalance oversampling (``true``, or a mapping; see
            :class:`~fedpilot.tasks.yolo.oversample.Oversampling`).
        conf, iou: Validation's confidence and NMS IoU thresholds.
        device: Where to train (``cpu``, ``0`` for the first GPU).
        warmup_epochs, lrf, hsv_h, mosaic, mixup, degrees, scale: Ultralytics' settings
            of the same names, per round of local training (so ``lrf``, the final
            learning rate as a fraction of ``local.lr``, is where each round's schedule
            ends: 1.0 keeps it constant).
    """

    learner_tunable: ClassVar[frozenset[str]] = frozenset(HYPERPARAMETERS)

    def __init__(
        self,
        *,
        model: str = "yolov8n.yaml",
        weights: str | None = None,
        root: str | None = None,
        val: str | None = None,
        classes: Sequence[str] | None = None,
        imgsz: int = 160,
        oversample: Mapping[str, Any] | bool | None = None,
        conf: float = 0.001,
        iou: float = 0.7,
        device: str = "cpu",
        data: DataSpec | None = None,
        seed: int = 0,
        **hyperparameters: float,
    ) -> None:
        unknown = sorted(set(hyperparameters) - set(HYPERPARAMETERS))
        if unknown:
            raise ValueError(
                f"unknown param {unknown[0]!r} (hyperparameters: {sorted(HYPERPARAMETERS)})"
            )
        super().__init__(data=data, seed=seed)
        if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32:
            raise ValueError(f"`imgsz` must be a multiple of 32, at least 32, got imgsz={imgsz!r}")
        for name, value in (("conf", conf), ("iou", iou)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ValueError(f"`{name}` must be a number in (0, 1), got {name}={value!r}")
        self.hyperparameters = {
            name: _in_range(name, hyperparameters.get(name, default))
            for name, (default, _, _) in HYPERPARAMETERS.items()
        }
        self.model_config = model
        self.weights_file = Path(weights) if weights is not None else None
        self.root = Path(root) if root is not None else None
        self.val_source = Path(val) if val is not None else None
        self.imgsz = imgsz
        self.oversampling = Oversampling.from_params(oversample)
        self.conf, self.iou = float(conf), float(iou)
        self.device = str(device)
        if classes is not None and (
            not classes or not all(isinstance(c, str) for c in classes) or isinstance(classes, str)
        ):
            raise ValueError(f"`classes` must be a list of class names, got classes={classes!r}")
        self._classes = tuple(classes) if classes is not None else None
        self._model: _ultralytics.DetectionModel | None = None

    # -- model -----------------------------------------------------------------------

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names: given, else those of the server's set or of ``root``."""
        if self._classes is None:
            source = self._validation_source() or (self.root / "data.yaml" if self.root else None)
            if source is None:
                raise TaskError(
                    "the yolo task needs its class names: set `task.params.classes`, `val` "
                    "or `root`"
                )
            self._classes = read_yolo_dataset(source).names
        return self._classes

    @property
    def model(self) -> _ultralytics.DetectionModel:
        if self._model is None:
            model = _ultralytics.build_model(
                self.model_config, classes=len(self.classes), seed=self.seed
            )
            if self.weights_file is not None:
                _ultralytics.load_weights_file(model, self.weights_file)
            self._model = model
        return self._model

    def get_weights(self) -> Weights:
        """Every state-dict entry, BatchNorm buffers included, in its own dtype (the
        int64 ``num_batches_tracked`` stays an integer)."""
        return [t.detach().cpu().numpy().copy() for t in self.model.state_dict().values()]

    def set_weights(self, weights: Weights) -> None:
        state = self.model.state_dict()
        if len(weights) != len(state):
            raise TaskError(f"expected {len(state)} arrays for the YOLO model, got {len(weights)}")
        loaded = {}
        for (name, current), array in zip(state.items(), weights, strict=True):
            if tuple(array.shape) != tuple(current.shape):
                raise TaskError(
                    f"array {name!r} has shape {tuple(array.shape)}, the model's is "
                    f"{tuple(current.shape)}"
                )
            loaded[name] = torch.as_tensor(np.asarray(array)).to(current.dtype)
        self.model.load_state_dict(loaded)

    def save_checkpoint(self, path: Path) -> None:
        """The current model as an Ultralytics checkpoint (``.pt``): ``YOLO(path)`` in
        Ultralytics opens it, and ``task.params.weights`` starts a federation from it."""
        _ultralytics.save_checkpoint(self.model, path)

    # -- training and evaluation -----------------------------------------------------

    def train(
        self,
        data: DetectionImages,
        settings: TrainSettings,
        *,
        gradient_terms: Sequence[GradientTerm] = (),
    ) -> Metrics:
        """Ultralytics' training for ``settings.epochs`` epochs on the learner's images.

        Fractional epochs below 1 train one pass over a seeded share of the images (a
        straggler's partial work); above 1 they must be whole.
        """
        if gradient_terms:
            raise TaskError("the yolo task cannot add gradient terms (FedProx, SCAFFOLD)")
        self._check_names(data)
        images = data
        epochs = settings.epochs
        if epochs < 1:
            keep = max(1, math.floor(len(data) * epochs))
            chosen = np.random.default_rng([settings.seed, 1]).permutation(len(data))[:keep]
            images, epochs = data.subset(sorted(chosen)), 1
        elif epochs != int(epochs):
            raise TaskError(f"the yolo task trains whole epochs (or less than one), got {epochs}")
        hyp = {**self.hyperparameters, **settings.task_params}
        order = training_order(images, self.oversampling)
        copy_augmenter = (
            augmenter(self.oversampling, seed=settings.seed) if len(order) > len(images) else None
        )
        overrides = {
            "model": self.model_config,
            "task": "detect",
            "data": "fedpilot",
            "epochs": int(epochs),
            "batch": settings.batch_size,
            "nbs": settings.batch_size,  # one optimizer step per batch: no accumulation
            "imgsz": self.imgsz,
            "optimizer": "SGD" if settings.optimizer == "sgd" else "Adam",
            "lr0": settings.lr,
            "momentum": settings.momentum,
            "weight_decay": settings.weight_decay,
            **hyp,
            "close_mosaic": 0,
            "seed": settings.seed,
            "deterministic": True,
            "device": self.device,
            "workers": 0,
            "amp": False,
            "plots": False,
            "val": False,
            "save": False,
            "verbose": False,
            "pretrained": False,
        }
        metrics = _ultralytics.train_round(
            self.model, images, order=order, augment_copy=copy_augmenter, overrides=overrides
        )
        losses = [value for name, value in metrics.items() if name.startswith("train_")]
        loss = sum(losses) if losses else float("nan")
        return {"loss": loss, **metrics, "oversampled": float(len(order) - len(images))}

    def evaluate(self, data: DetectionImages) -> Metrics:
        """Precision, recall, mAP@0.5 (``map50``), mAP@0.5:0.95 (``map50_95``) and loss."""
        self._check_names(data)
        return _ultralytics.validate(
            self.model, data, imgsz=self.imgsz, batch=16, conf=self.conf, iou=self.iou
        )

    def _check_names(self, data: DetectionImages) -> None:
        if tuple(data.names) != self.classes:
            raise TaskError(
                f"the data's classes {list(data.names)} differ from the model's "
                f"{list(self.classes)}"
            )

    # -- data ------------------------------------------------------------------------

    def load_data(self, source: Path) -> LearnerData[DetectionImages]:
        """A learner's YOLO dataset: a ``data.yaml`` (or a folder holding one); its
        ``train`` images train, its ``val`` images (if any) are its local test set."""
        dataset = read_yolo_dataset(source)
        return LearnerData(dataset.split("train"), dataset.split("val") if dataset.val else None)

    def learner_data(self, index: int) -> LearnerData[DetectionImages]:
        if self.root is None:
            raise TaskError(
                "the yolo task's simulated learners read `task.params.root`/learner-<i>; "
                "set `root` (e.g. a `fedpilot data make-driving` folder)"
            )
        return self.load_data(self.root / f"learner-{index}")

    def central_test_data(self) -> DetectionImages | None:
        source = self._validation_source()
        return read_yolo_dataset(source).split("val") if source is not None else None

    def validation_data(self) -> DetectionImages | None:
        return None

    def pooled_train_data(self) -> DetectionImages:
        if self.root is None:
            raise TaskError("pooling the learners' data needs `task.params.root`")
        pooled = [
            item
            for index in range(self.data_spec.num_learners)
            for item in self.learner_data(index).train.images
        ]
        return DetectionImages(tuple(pooled), self.classes)

    def _validation_source(self) -> Path | None:
        if self.val_source is not None:
            return self.val_source
        if self.root is not None and (self.root / "val").exists():
            return self.root / "val"
        return None

    # -- logging ---------------------------------------------------------------------

    def model_artifact(self) -> ModelArtifact:
        """The detector as an MLflow ``pytorch`` model (an Ultralytics ``DetectionModel``)."""
        return ModelArtifact(flavor="pytorch", model=self.model)

    def input_example(self, rows: int = 5) -> None:
        return None  # images in, boxes out: no tabular signature


def _in_range(name: str, value: Any) -> float:
    _, low, high = HYPERPARAMETERS[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"`{name}` must be a number in [{low}, {high}], got {name}={value!r}")
    return float(value)
