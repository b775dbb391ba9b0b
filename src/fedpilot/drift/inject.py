"""``drift_injection``: the learner half of simulated drift (``simulation.drift``).

The simulation (:class:`~fedpilot.fleet.simulation.drift.DriftFleet`) marks a drifting
learner's train and evaluate instructions from the onset round on; this stage changes
that learner's data before anything else on the learner sees it (the drift summary
included). The change is seeded per learner, so a learner's drifted data is the same
every round (its data changed once, as data does), and the same on a resumed run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.data._base import ArrayDataset
from fedpilot.errors import TaskError
from fedpilot.transforms._base import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import Config, LearnerState

KIND = "drift-kind"
"""Instruction config: ``label_mix`` or ``feature_shift`` (absent: no drift)."""
SEED = "drift-seed"
KEEP = "drift-keep-classes"
SHIFT = "drift-shift"


@TRANSFORMS.register("drift_injection")
class DriftInjection(UpdateTransform):
    """Changes a marked instruction's data (see the module docstring)."""

    name = "drift_injection"

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state, ctx
        if work.config.get(KIND) and work.kind in ("train", "evaluate"):
            if not isinstance(work.data, ArrayDataset):
                raise TaskError("simulated drift needs a task with array data")
            work.data = drifted(work.data, work.config)
        return run(work)


def drifted(data: ArrayDataset, config: Config) -> ArrayDataset:
    """``data`` after the drift ``config`` describes."""
    rng = np.random.default_rng(int(config.get(SEED, 0)))
    if config[KIND] == "label_mix":
        return label_mix(data, float(config.get(KEEP, 0.3)), rng)
    return feature_shift(data, float(config.get(SHIFT, 1.0)))


def label_mix(data: ArrayDataset, keep: float, rng: np.random.Generator) -> ArrayDataset:
    """Only a seeded ``keep`` share of the classes ``data`` holds (at least one), resampled
    with replacement to ``data``'s size: the same learner, another label mix."""
    y = np.asarray(data.y)
    if not np.issubdtype(y.dtype, np.integer) or y.size == 0:
        raise TaskError("label_mix drift needs integer class labels")
    classes = np.unique(y)
    kept = rng.choice(classes, size=max(1, round(keep * classes.size)), replace=False)
    pool = np.flatnonzero(np.isin(y, kept))
    return data.subset(np.sort(rng.choice(pool, size=y.size, replace=True)))


def feature_shift(data: ArrayDataset, shift: float) -> ArrayDataset:
    """Every feature moved by ``shift`` of its standard deviation over ``data``."""
    x: npt.NDArray[Any] = np.asarray(data.x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    moved = x + shift * x.std(axis=0, keepdims=True)
    return ArrayDataset(moved.astype(x.dtype), data.y)
