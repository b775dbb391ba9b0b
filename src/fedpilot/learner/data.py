"""Where a learner's data comes from: partition i of the spec's dataset, or its own path."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedpilot.data._base import LearnerData

if TYPE_CHECKING:
    # Only named here: importing fedpilot.tasks would pull in torch.
    from fedpilot.tasks._base import Task

DataSource = int | Path
"""A learner's data: partition i of the spec's dataset, or a path of its own that the
Task reads (:meth:`Task.load_data`): for array tasks an .npz file, or a directory of
``x_train.npy``, ``y_train.npy`` (and optionally ``x_test.npy``, ``y_test.npy``)."""


@functools.lru_cache(maxsize=2)
def own_data(task: Task, path: Path) -> LearnerData[Any]:
    """``task.load_data(path)``, read once per process, task and path (a process serves
    its learner every round from the same Task, which :func:`learner.core._task` keeps)."""
    return task.load_data(path)
