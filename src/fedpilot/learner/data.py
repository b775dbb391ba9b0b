"""Where a learner's data comes from: partition i of the spec's dataset, or its own file."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fedpilot.data._base import ArrayDataset, LearnerData
from fedpilot.errors import TaskError

DataSource = int | Path
"""A learner's data: partition i of the spec's dataset, or an .npz file of its own
(``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``)."""


@functools.lru_cache(maxsize=2)
def file_data(path: str) -> LearnerData:
    """The arrays of a learner's own .npz file (read once per process and path)."""
    try:
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise TaskError(f"cannot read the learner's data file {path!r}: {exc}") from exc
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise TaskError(
            f"the learner's data file {path!r} must hold arrays x_train and y_train "
            f"(and optionally x_test, y_test), missing {missing}; it has {sorted(arrays)}"
        )
    train = ArrayDataset(arrays["x_train"], arrays["y_train"])
    test = None
    if "x_test" in arrays and "y_test" in arrays:
        test = ArrayDataset(arrays["x_test"], arrays["y_test"])
    return LearnerData(train=train, test=test)
