"""Object detection with Ultralytics YOLO: the ``yolo`` task.

Ultralytics is imported only when a model is built, so this package loads where
Ultralytics is not installed (the main virtualenv); building a model there fails with a
``TaskError`` that says to use the detection virtualenv.

- ``task``: :class:`YoloTask`, what a spec's ``task: {name: yolo}`` runs.
- ``oversample``: the learner's class-imbalance oversampling and augmentation.
- ``_ultralytics``: every use of Ultralytics (import, dataset, trainer, validator).
"""

from fedpilot.tasks.yolo.task import HYPERPARAMETERS, YoloTask

__all__ = ["HYPERPARAMETERS", "YoloTask"]
