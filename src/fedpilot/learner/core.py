"""The learner's work on fedpilot's own types: load weights, train or evaluate, reply.

Flower-free, so it runs the same behind a Flower ClientApp (``learner/app.py``, the
wire adapter used on real machines and under Flower's engines) and directly inside a
LocalFleet process, where no wire exists and encoding every array to .npy bytes and
back would cost more than training a small model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fedpilot.learner.protocol import settings_from_config
from fedpilot.spec import FederationSpec
from fedpilot.tasks import build_task
from fedpilot.tasks._base import Task
from fedpilot.types import Config, Metrics, Weights


@dataclass(frozen=True)
class LearnerOutput:
    weights: Weights
    """The trained weights (empty for an evaluation)."""
    metrics: Metrics
    num_examples: int


class TaskLearner:
    """Serves ``spec``'s Task for any learner (partition) of the federation."""

    def __init__(self, spec: FederationSpec) -> None:
        self.spec = spec
        self._spec_json = spec.model_dump_json()

    @property
    def task(self) -> Task:
        return _task(self._spec_json)

    def train(self, partition: int, weights: Weights, config: Config) -> LearnerOutput:
        task = self.task
        data = task.learner_data(self._check(partition))
        task.set_weights(weights)
        metrics = task.train(data.train, settings_from_config(config))
        return LearnerOutput(task.get_weights(), metrics, len(data.train))

    def evaluate(self, partition: int, weights: Weights, config: Config) -> LearnerOutput:
        del config
        task = self.task
        data = task.learner_data(self._check(partition))
        task.set_weights(weights)
        test = data.test if data.test is not None and len(data.test) else data.train
        return LearnerOutput([], task.evaluate(test), len(test))

    def _check(self, partition: int) -> int:
        if not 0 <= partition < self.spec.data.num_learners:
            raise ValueError(
                f"`partition-id` must be in [0, {self.spec.data.num_learners}), "
                f"got partition-id={partition}"
            )
        return partition


@functools.lru_cache(maxsize=4)
def _task(spec_json: str) -> Task:
    # One Task per process and spec: a process serving many learners builds the model
    # and the partition once.
    spec = FederationSpec.model_validate_json(spec_json)
    task: Task = build_task(spec.task, spec.data, spec.seed, spec.base_dir)
    return task
