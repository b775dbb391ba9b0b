"""The learner's work on fedpilot's own types: run an instruction through the
transforms' chain around the Task, and reply.

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

from fedpilot.data._base import LearnerData
from fedpilot.errors import TaskError
from fedpilot.learner import sysmetrics
from fedpilot.learner.data import DataSource, own_data
from fedpilot.learner.protocol import SERVER_ROUND, settings_from_config
from fedpilot.spec import FederationSpec
from fedpilot.tasks import build_task
from fedpilot.tasks._base import Task
from fedpilot.transforms import (
    Exchange,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    answer_query,
    build_transforms,
    query_action,
    run_chain,
)
from fedpilot.types import Config, Instruction, LearnerState, Metrics, Weights


@dataclass(frozen=True)
class LearnerResult:
    """What one instruction produced, ready to become a Reply."""

    weights: Weights
    """The trained weights (empty for an evaluation or a query)."""
    metrics: Metrics
    """The task's metrics, plus what the transforms added (``sys.*``)."""
    num_examples: int
    extras: dict[str, Weights] = field(default_factory=dict)
    """Named arrays for the server (SCAFFOLD's control delta; a query's answer)."""
    state: LearnerState = field(default_factory=dict)
    """The learner's whole state for its next instruction."""


class TaskLearner:
    """Serves ``spec``'s Task for any learner (partition) of the federation, every
    instruction passing the spec's transforms (:func:`~fedpilot.transforms.transforms_for`).
    """

    def __init__(self, spec: FederationSpec) -> None:
        self.spec = spec
        self._spec_json = spec.model_dump_json()
        self.transforms: list[UpdateTransform] = build_transforms(spec)

    @property
    def task(self) -> Task:
        return _task(self._spec_json)

    def run(self, source: DataSource, instruction: Instruction) -> LearnerResult:
        """Do what ``instruction`` asks: train, evaluate or answer ``query.<action>``.

        Raises:
            ValueError: an instruction kind nothing here answers.
        """
        kind = instruction.kind
        if kind in ("train", "evaluate"):
            return self._work(
                kind,
                source,
                instruction.weights,
                instruction.config,
                extras=instruction.extras,
                state=instruction.state,
            )
        action = query_action(kind)
        if action is None:
            raise ValueError(
                f"an instruction's kind must be train, evaluate or query.<action>, got {kind!r}"
            )
        return self.query(
            source,
            action,
            Exchange(dict(instruction.extras), dict(instruction.config)),
            state=instruction.state,
        )

    def train(
        self,
        source: DataSource,
        weights: Weights,
        config: Config,
        *,
        extras: dict[str, Weights] | None = None,
        state: LearnerState | None = None,
    ) -> LearnerResult:
        """Train from ``weights`` on ``source``'s data through the chain."""
        return self._work("train", source, weights, config, extras=extras, state=state)

    def evaluate(
        self,
        source: DataSource,
        weights: Weights,
        config: Config,
        *,
        state: LearnerState | None = None,
    ) -> LearnerResult:
        """Evaluate ``weights`` on ``source``'s test data (its training data if it has
        none) through the chain."""
        return self._work("evaluate", source, weights, config, extras=None, state=state)

    def query(
        self,
        source: DataSource,
        action: str,
        request: Exchange,
        *,
        state: LearnerState | None = None,
    ) -> LearnerResult:
        """The answer of the transform that declared ``action`` (its arrays become the
        result's extras, its metrics the result's metrics)."""
        own = dict(state or {})
        ctx = self._context(source, f"query.{action}", request.config)
        answer = answer_query(self.transforms, action, request, state=own, ctx=ctx)
        return LearnerResult([], dict(answer.metrics), 0, dict(answer.arrays), own)

    def _work(
        self,
        kind: str,
        source: DataSource,
        weights: Weights,
        config: Config,
        *,
        extras: dict[str, Weights] | None,
        state: LearnerState | None,
    ) -> LearnerResult:
        data = self.data(source)
        dataset = data.train
        if kind == "evaluate" and data.test is not None and len(data.test):
            dataset = data.test
        # Shallow copies: transforms may change the work and the state; the caller's
        # instruction (shared by every learner in-process) stays as it was.
        own = dict(state or {})
        work = LocalWork(kind, weights, dataset, dict(config), dict(extras or {}))
        ctx = self._context(source, kind, config)
        out = run_chain(self.transforms, work, self._task_work, state=own, ctx=ctx)
        metrics = {**out.metrics, **sysmetrics.state_bytes(state or {}, own)}
        return LearnerResult(out.weights, metrics, out.num_examples, out.extras, own)

    def _task_work(self, work: LocalWork) -> LearnerOutput:
        """The innermost stage: the task itself."""
        task = self.task
        task.set_weights(work.weights)
        if work.kind == "train":
            settings = settings_from_config(work.config)
            unknown = sorted(set(settings.task_params) - task.learner_tunable)
            if unknown:
                raise TaskError(
                    f"task {type(task).__name__} takes no per-call value of {unknown} "
                    f"(it takes {sorted(task.learner_tunable) or 'none'}): a learner cannot "
                    "tune them"
                )
            if work.gradient_terms:
                metrics = task.train(work.data, settings, gradient_terms=work.gradient_terms)
            else:  # a user's task need not take gradient terms it is never given
                metrics = task.train(work.data, settings)
            return LearnerOutput(task.get_weights(), dict(metrics), len(work.data))
        return LearnerOutput([], dict(task.evaluate(work.data)), len(work.data))

    def _context(self, source: DataSource, kind: str, config: Config) -> LearnerContext:
        return LearnerContext(
            learner=str(source),
            round=int(config.get(SERVER_ROUND, 0)),
            kind=kind,
            config=config,
            task=self.task,
        )

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


@functools.lru_cache(maxsize=4)
def _task(spec_json: str) -> Task:
    # One Task per process and spec: a process serving many learners builds the model
    # and the partition once.
    spec = FederationSpec.model_validate_json(spec_json)
    task: Task = build_task(spec.task, spec.data, spec.seed, spec.base_dir)
    return task
