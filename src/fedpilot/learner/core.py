"""The learner's work on fedpilot's own types: load weights, train or evaluate, reply.

Flower-free, so it runs the same behind a Flower ClientApp (``learner/app.py``, the
wire adapter used on real machines and under Flower's engines) and directly inside a
LocalFleet process, where no wire exists and encoding every array to .npy bytes and
back would cost more than training a small model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.data._base import ArrayDataset, LearnerData
from fedpilot.errors import TaskError
from fedpilot.learner import sysmetrics
from fedpilot.learner.data import DataSource, own_data
from fedpilot.learner.protocol import (
    LABEL_FLIP,
    SCAFFOLD_CONTROL,
    SCAFFOLD_DELTA,
    settings_from_config,
)
from fedpilot.spec import FederationSpec
from fedpilot.tasks import build_task
from fedpilot.tasks._base import Task
from fedpilot.tasks.torch import TorchTask
from fedpilot.types import Config, Metrics, Weights

LearnerState = dict[str, Weights]
"""What a learner keeps between rounds (SCAFFOLD's control variate c_i)."""


@dataclass(frozen=True)
class LearnerOutput:
    weights: Weights
    """The trained weights (empty for an evaluation)."""
    metrics: Metrics
    """The learner's own dict: :meth:`TaskLearner.train` adds the system metrics to it."""
    num_examples: int
    extras: dict[str, Weights] = field(default_factory=dict)
    """Named arrays for the strategy (SCAFFOLD's control delta)."""
    state: LearnerState | None = None
    """The learner's state for its next round (None: unchanged)."""


class TaskLearner:
    """Serves ``spec``'s Task for any learner (partition) of the federation."""

    def __init__(self, spec: FederationSpec) -> None:
        self.spec = spec
        self._spec_json = spec.model_dump_json()

    @property
    def task(self) -> Task:
        return _task(self._spec_json)

    def train(
        self,
        source: DataSource,
        weights: Weights,
        config: Config,
        *,
        extras: dict[str, Weights] | None = None,
        state: LearnerState | None = None,
    ) -> LearnerOutput:
        """Train from ``weights`` on ``source``'s data; the reply's metrics include the
        learner's system metrics (``sys.*``)."""
        meter = sysmetrics.Meter(weights)
        out = self._train(source, weights, config, extras=extras, state=state)
        out.metrics.update(meter.read(out.weights, *out.extras.values()))
        return out

    def _train(
        self,
        source: DataSource,
        weights: Weights,
        config: Config,
        *,
        extras: dict[str, Weights] | None,
        state: LearnerState | None,
    ) -> LearnerOutput:
        task = self.task
        train = self.data(source).train
        if config.get(LABEL_FLIP):
            # A simulated attacker (simulation/attacks.py) poisons its own labels.
            train = ArrayDataset(train.x, _flipped(train.y, _num_classes(self._spec_json)))
        task.set_weights(weights)
        settings = settings_from_config(config)
        control = (extras or {}).get(SCAFFOLD_CONTROL)
        if control is None:
            metrics = task.train(train, settings)
            return LearnerOutput(task.get_weights(), dict(metrics), len(train))
        # SCAFFOLD (Karimireddy et al., option II): correct every local gradient by
        # c - c_i, then move c_i by what the local steps revealed about the drift.
        if not isinstance(task, TorchTask):
            raise TaskError("the scaffold strategy needs a torch task")
        c = [_floats(a) for a in control]
        kept = (state or {}).get(SCAFFOLD_CONTROL)
        own = [_floats(a) for a in kept] if kept else [np.zeros_like(a) for a in c]  # c_i = 0
        correction: Weights = [
            (ci_ - own_).astype(np.float32) for ci_, own_ in zip(c, own, strict=True)
        ]
        metrics = task.train(train, settings, correction=correction)
        trained = task.get_weights()
        scale = 1.0 / (max(metrics.get("local_steps", 1.0), 1.0) * settings.lr)
        new_own: Weights = [
            (o - g + (_floats(x) - _floats(y)) * scale).astype(np.float32)
            for o, g, x, y in zip(own, c, weights, trained, strict=True)
        ]
        delta: Weights = [
            (_floats(n) - o).astype(np.float32) for n, o in zip(new_own, own, strict=True)
        ]
        return LearnerOutput(
            trained,
            dict(metrics),
            len(train),
            extras={SCAFFOLD_DELTA: delta},
            state={**(state or {}), SCAFFOLD_CONTROL: new_own},
        )

    def evaluate(self, source: DataSource, weights: Weights, config: Config) -> LearnerOutput:
        del config
        meter = sysmetrics.Meter(weights)
        task = self.task
        data = self.data(source)
        task.set_weights(weights)
        test = data.test if data.test is not None and len(data.test) else data.train
        metrics = task.evaluate(test)
        return LearnerOutput([], {**metrics, **meter.read()}, len(test))

    def declared_examples(self, source: DataSource) -> int:
        """How many training examples the learner holds (what it declares)."""
        return len(self.data(source).train)

    def data(self, source: DataSource) -> LearnerData[Any]:
        """The learner's share of the spec's dataset, or its own data as the Task loads it."""
        if isinstance(source, Path):
            return own_data(self.task, source)
        return self.task.learner_data(self._check(source))

    def _check(self, partition: int) -> int:
        if not 0 <= partition < self.spec.data.num_learners:
            raise ValueError(
                f"`partition-id` must be in [0, {self.spec.data.num_learners}), "
                f"got partition-id={partition}"
            )
        return partition


def _floats(array: np.ndarray) -> npt.NDArray[np.float64]:
    return np.asarray(array, dtype=np.float64)


def _flipped(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise TaskError("the label_flip attack needs integer class labels")
    return (num_classes - 1 - labels).astype(labels.dtype)


@functools.lru_cache(maxsize=4)
def _num_classes(spec_json: str) -> int:
    labels = _task(spec_json).pooled_train_data().y
    return int(np.max(labels)) + 1


@functools.lru_cache(maxsize=4)
def _task(spec_json: str) -> Task:
    # One Task per process and spec: a process serving many learners builds the model
    # and the partition once.
    spec = FederationSpec.model_validate_json(spec_json)
    task: Task = build_task(spec.task, spec.data, spec.seed, spec.base_dir)
    return task
