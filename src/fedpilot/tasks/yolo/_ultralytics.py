"""Everything that touches Ultralytics: importing it safely, its dataset fed from fedpilot's
checked reader, one round's local training, and validation.

Ultralytics is made to run as a whole program: it reads and writes a settings file,
reports to MLflow and other services on its own, downloads fonts and weights, checks
datasets its own way and saves checkpoints and plots. A learner inside a federation must
do none of that, so:

- it is imported with a throw-away config folder and ``YOLO_OFFLINE`` set, and every
  integration (MLflow, TensorBoard, hub, ...) is switched off in its settings: fedpilot's
  MLflow callback records the run, and Ultralytics' would open a second run in it;
- datasets are built from :class:`~fedpilot.data.yolo.DetectionImages`, which fedpilot
  read and checked (file:line errors), so Ultralytics neither scans the folders nor
  writes ``labels.cache`` into the learner's data;
- the trainer saves nothing, plots nothing and does not validate: the server validates
  the aggregated model each round (:func:`validate`).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fedpilot.data.yolo import DetectionImages
from fedpilot.errors import TaskError

_INTEGRATIONS = (
    "mlflow",
    "tensorboard",
    "wandb",
    "clearml",
    "comet",
    "dvc",
    "neptune",
    "raytune",
    "hub",
    "platform",
    "sync",
)

_ready = False

DetectionModel = Any
"""Ultralytics' ``DetectionModel`` (a torch module); named so, since Ultralytics is not
importable everywhere this module is type-checked."""


def require_ultralytics() -> None:
    """Import Ultralytics once per process, offline and with its integrations off.

    Raises:
        TaskError: Ultralytics is not installed (it lives in the detection virtualenv).
    """
    global _ready
    if _ready:
        return
    # Before the first import: Ultralytics reads these when its package loads. A user's
    # own values win.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if "YOLO_CONFIG_DIR" not in os.environ:
        config_dir = tempfile.mkdtemp(prefix="fedpilot-ultralytics-")
        atexit.register(shutil.rmtree, config_dir, ignore_errors=True)
        os.environ["YOLO_CONFIG_DIR"] = config_dir
    try:
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise TaskError(
            "the yolo task needs Ultralytics, which is not installed here: run it in the "
            "detection virtualenv (`make .venv-detect`, then .venv-detect/bin/fedpilot), or "
            f"`pip install 'fedpilot[detection]'` ({exc})"
        ) from exc
    SETTINGS.update({name: False for name in _INTEGRATIONS if name in SETTINGS})
    _ready = True


def build_model(config: str, *, classes: int, seed: int) -> DetectionModel:
    """A detection model from an Ultralytics model YAML (``yolov8n.yaml``, a path),
    initialized from ``seed`` alone; the global torch RNG is left as it was.

    Raises:
        TaskError: Ultralytics does not know the config.
    """
    require_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = DetectionModel(config, nc=classes, ch=3, verbose=False)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise TaskError(
                f"`task.params.model` {config!r} is not an Ultralytics detection model YAML: {exc}"
            ) from exc
    model.args = get_cfg()  # the loss reads its gains (box, cls, dfl) from here
    return model


def load_weights_file(model: DetectionModel, path: Path) -> None:
    """Load a user's Ultralytics checkpoint (``.pt``) into ``model``: the tensors whose
    names and shapes match (a head for another number of classes is left as built).

    Raises:
        TaskError: The file is missing or is not an Ultralytics checkpoint.
    """
    from ultralytics.nn.tasks import load_checkpoint

    if not path.is_file():
        raise TaskError(f"`task.params.weights`: no such file {str(path)!r}")
    try:
        weights, _ = load_checkpoint(str(path))
    except Exception as exc:  # any unpickling failure: the file is not a checkpoint
        raise TaskError(
            f"`task.params.weights`: {str(path)!r} is not an Ultralytics checkpoint: {exc}"
        ) from exc
    model.load(weights, verbose=False)


def save_checkpoint(model: DetectionModel, path: Path) -> None:
    """``model`` as an Ultralytics checkpoint: ``YOLO(path)`` opens it, and the yolo
    task's ``weights`` starts from it."""
    import copy

    from ultralytics import __version__

    snapshot = copy.deepcopy(model).float().eval()
    snapshot.args = dict(vars(model.args)) if hasattr(model.args, "__dict__") else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": snapshot, "train_args": snapshot.args, "version": __version__}, path)


@functools.cache  # one class per process (it subclasses Ultralytics', imported on first use)
def _dataset_class() -> type:
    from ultralytics.data.dataset import YOLODataset

    class CheckedYoloDataset(YOLODataset):  # type: ignore[misc]
        """Ultralytics' dataset over images fedpilot has read and checked.

        Images listed twice or more (oversampled) come back augmented by ``augment_copy``
        from their second appearance on; the first appearance is the image as it is.
        """

        def __init__(
            self,
            *,
            images: DetectionImages,
            order: Sequence[int],
            augment_copy: Callable[[dict[str, Any]], dict[str, Any]] | None,
            seed: int,
            **kwargs: Any,
        ) -> None:
            self._images = images
            self._order = list(order)
            seen: set[int] = set()
            self._is_copy = []
            for index in self._order:
                self._is_copy.append(index in seen)
                seen.add(index)
            self._augment_copy = augment_copy
            self._seed = seed
            super().__init__(img_path=[], **kwargs)

        def get_img_files(self, img_path: Any) -> list[str]:
            return [str(self._images.images[i].image) for i in self._order]

        def get_labels(self) -> list[dict[str, Any]]:
            labels: list[dict[str, Any]] = []
            for index in self._order:
                item = self._images.images[index]
                with Image.open(item.image) as image:
                    width, height = image.size
                boxes = item.boxes.astype(np.float32)
                labels.append(
                    {
                        "im_file": str(item.image),
                        "shape": (height, width),
                        "cls": boxes[:, 0:1],
                        "bboxes": boxes[:, 1:],
                        "segments": [],
                        "keypoints": None,
                        "normalized": True,
                        "bbox_format": "xywh",
                    }
                )
            return labels

        def build_transforms(self, hyp: Any) -> Any:
            transforms = super().build_transforms(hyp)
            # Ultralytics' own light Albumentations step draws from an unseeded generator;
            # seed it, so the same round of the same run trains the same.
            for step in getattr(transforms, "transforms", []):
                inner = getattr(step, "transforms", None)
                for sub in inner if isinstance(inner, list) else [step]:
                    compose = getattr(sub, "transform", None)
                    if compose is not None and hasattr(compose, "set_random_seed"):
                        compose.set_random_seed(self._seed)
            return transforms

        def get_image_and_label(self, index: int) -> dict[str, Any]:
            label = super().get_image_and_label(index)
            if self._augment_copy is not None and self._is_copy[index]:
                label = self._augment_copy(label)
            return dict(label)

    return CheckedYoloDataset


def checked_dataset(
    model: DetectionModel,
    images: DetectionImages,
    order: Sequence[int],
    *,
    hyp: Any,
    data: Mapping[str, Any],
    batch: int | None = 16,
    train: bool = False,
    augment_copy: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    seed: int = 0,
) -> Any:
    """Ultralytics' dataset over ``images`` in ``order``: augmented for training (repeats
    through ``augment_copy``), letterboxed in rectangular batches for validation."""
    return _dataset_class()(
        images=images,
        order=order,
        augment_copy=augment_copy if train else None,
        seed=seed,
        imgsz=hyp.imgsz,
        batch_size=batch,
        augment=train,
        hyp=hyp,
        rect=not train,
        cache=None,
        stride=max(int(model.stride.max()), 32),
        pad=0.0 if train else 0.5,
        prefix="train: " if train else "val: ",
        data=dict(data),
        task="detect",
    )


def train_round(
    model: DetectionModel,
    images: DetectionImages,
    *,
    order: Sequence[int],
    augment_copy: Callable[[dict[str, Any]], dict[str, Any]] | None,
    overrides: Mapping[str, Any],
) -> dict[str, float]:
    """Train ``model`` in place on ``images`` (listed in ``order``, repeats oversampled)
    with Ultralytics' trainer; returns the mean training losses of the last epoch and that
    epoch's learning rate (``lr_last``)."""
    require_ultralytics()
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils import callbacks

    names = dict(enumerate(images.names))
    seed = int(overrides["seed"])

    class RoundTrainer(DetectionTrainer):  # type: ignore[misc]
        def get_dataset(self) -> dict[str, Any]:
            # No data.yaml check (it would download a font); the splits are built below.
            return {"train": "train", "val": "val", "names": names, "nc": len(names), "channels": 3}

        def build_dataset(
            self, img_path: str, mode: str = "train", batch: int | None = None
        ) -> Any:
            if mode != "train":  # the trainer builds a val loader it never runs
                return checked_dataset(model, images, [0], hyp=self.args, data=self.data)
            return checked_dataset(
                model, images, order, hyp=self.args, data=self.data, batch=batch,
                train=True, augment_copy=augment_copy, seed=seed,
            )  # fmt: skip

        def validate(self) -> tuple[dict[str, float], float]:
            return dict(self.metrics or {}), 0.0  # the server validates the aggregate

        def save_model(self) -> bool:
            return False

        def final_eval(self) -> None:
            return None

    with tempfile.TemporaryDirectory(prefix="fedpilot-yolo-") as scratch:
        trainer = RoundTrainer(
            overrides={**overrides, "project": scratch, "name": "round", "exist_ok": True},
            _callbacks=callbacks.get_default_callbacks(),
        )
        trainer.model = model
        try:
            trainer.train()
        except (RuntimeError, ValueError) as exc:
            raise TaskError(f"YOLO training failed: {exc}") from exc
    model.float()
    losses = trainer.tloss or {}
    # The weights' learning rate in the last epoch: where the schedule (lr0 to lr0·lrf
    # over the round's epochs) ended.
    last_lr = float(trainer.lr["lr/pg0"]) if getattr(trainer, "lr", None) else float("nan")
    return {**{f"train_{name}": float(value) for name, value in losses.items()}, "lr_last": last_lr}


def validate(
    model: DetectionModel,
    images: DetectionImages,
    *,
    imgsz: int,
    batch: int,
    conf: float,
    iou: float,
) -> dict[str, float]:
    """Precision, recall, mAP@0.5 and mAP@0.5:0.95 (Ultralytics' definitions) and the
    loss of ``model`` on ``images``; ``model`` is left in training mode."""
    require_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader
    from ultralytics.models.yolo.detect import DetectionValidator

    args = get_cfg(
        overrides={
            "task": "detect",
            "imgsz": imgsz,
            "batch": batch,
            "conf": conf,
            "iou": iou,
            "plots": False,
            "save_json": False,
            "verbose": False,
            "workers": 0,
        }
    )
    names = dict(enumerate(images.names))
    data = {"names": names, "nc": len(names), "channels": 3, "val": "val"}
    dataset = checked_dataset(model, images, range(len(images)), hyp=args, data=data, batch=batch)
    loader = build_dataloader(dataset, batch=batch, workers=0, shuffle=False, rank=-1)
    with tempfile.TemporaryDirectory(prefix="fedpilot-yolo-val-") as scratch:
        validator = DetectionValidator(loader, save_dir=Path(scratch), args=args)
        validator.device = next(model.parameters()).device  # where training left it
        validator.data = data
        validator.training = True  # in-memory model, no AutoBackend and no data.yaml check
        model.eval()
        validator.init_metrics(model)
        loss = torch.zeros(3)
        with torch.no_grad():
            for batch_data in loader:
                batch_data = validator.preprocess(batch_data)
                preds = model(batch_data["img"])
                parts = model.loss(batch_data, preds)[1]
                loss += torch.stack([v.detach().float().cpu() for v in parts.values()])
                validator.update_metrics(validator.postprocess(preds), batch_data)
        stats = validator.get_stats()
    model.train()
    return {
        "precision": float(stats["metrics/precision(B)"]),
        "recall": float(stats["metrics/recall(B)"]),
        "map50": float(stats["metrics/mAP50(B)"]),
        "map50_95": float(stats["metrics/mAP50-95(B)"]),
        "loss": float(loss.sum() / max(len(loader), 1)),
    }
