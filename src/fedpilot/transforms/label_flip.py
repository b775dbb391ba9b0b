"""``label_flip``: the simulated attacker that trains on flipped labels ``y → C−1−y``.

The attack simulation (``fleet/simulation/attacks.py``) marks an attacker's train
instruction with :data:`~fedpilot.learner.protocol.LABEL_FLIP`; this stage poisons that
learner's training data. Honest learners' work passes untouched.
"""

from __future__ import annotations

import numpy as np

from fedpilot.data._base import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.learner.protocol import LABEL_FLIP
from fedpilot.transforms._base import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerState


@TRANSFORMS.register("label_flip")
class LabelFlip(UpdateTransform):
    """Flips the labels of a train instruction whose config sets ``label-flip``.

    The number of classes C is the task's over the pooled training data, so every
    attacker flips with the same C whatever labels its own partition holds.
    """

    name = "label_flip"

    def __init__(self) -> None:
        self._classes: dict[int, int] = {}

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state
        if work.kind == "train" and work.config.get(LABEL_FLIP):
            data = work.data
            if not isinstance(data, ArrayDataset):
                raise TaskError("the label_flip attack needs a task with array data")
            work.data = ArrayDataset(data.x, flipped(data.y, self._num_classes(ctx)))
        return run(work)

    def _num_classes(self, ctx: LearnerContext) -> int:
        task = ctx.task
        if task is None:
            raise TaskError("the label_flip attack needs fedpilot's task on the learner")
        # One task per process serves many learners: count its classes once.
        key = id(task)
        if key not in self._classes:
            self._classes[key] = int(np.max(task.pooled_train_data().y)) + 1
        return self._classes[key]


def flipped(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` mapped ``y → num_classes − 1 − y``."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise TaskError("the label_flip attack needs integer class labels")
    return (num_classes - 1 - labels).astype(labels.dtype)
