"""LocalFleet: learners on this machine, in-process or in a pool of worker processes."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from flwr.app import RecordDict

from fedpilot.fleet._base import Fleet
from fedpilot.fleet._messages import LearnerJob, failed_reply, run_learner
from fedpilot.fleet._pool import WorkerPool
from fedpilot.fleet.apps import LearnerSource
from fedpilot.learner.core import LearnerState, TaskLearner
from fedpilot.spec import FederationSpec, LocalRuntime
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply


class LocalFleet(Fleet):
    """``num_learners`` simulated learners, one per data partition.

    With ``workers=0`` each learner runs in this process, one after another (the
    fastest mode for small models: no serialization). A learner cannot be interrupted
    in-process, so the deadline is checked between learners; learners not started by
    then fail with a timeout. With ``workers=N`` learners run in N processes and one
    that overruns the deadline is killed.

    Each learner keeps its state across rounds, as on a real node: a ClientApp its
    Flower ``context.state``, a fedpilot learner its own (SCAFFOLD's control variate).
    The latter is part of :meth:`state_dict`, so a resumed run continues exactly.
    """

    def __init__(self, spec: FederationSpec, *, workers: int | None = None) -> None:
        self._source = LearnerSource.from_spec(spec)
        self._num = spec.data.num_learners
        self._run_config = dict(spec.task.run_config)
        if workers is None:
            workers = spec.runtime.workers if isinstance(spec.runtime, LocalRuntime) else 0
        self._workers = workers
        self._states: dict[LearnerId, RecordDict | LearnerState] = {}
        self._ids = itertools.count()
        sizes: list[int | None] = [None] * self._num
        if spec.task.name is not None:
            # Simulated learners declare their data size, as a registering node would.
            declaring = TaskLearner(spec)
            sizes = [declaring.declared_examples(i) for i in range(self._num)]
        self._infos = [
            LearnerInfo(id=str(i), partition=i, declared_examples=sizes[i])
            for i in range(self._num)
        ]
        self._partition = {info.id: i for i, info in enumerate(self._infos)}
        self._runtime = self._source.load() if self._workers == 0 else None
        self._pool = (
            WorkerPool(self._source, self._workers, spec.runtime.torch_threads)
            if self._workers > 0
            else None
        )

    @property
    def replies_in_order(self) -> bool:
        return self._pool is None

    def learners(self) -> Sequence[LearnerInfo]:
        return self._infos

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        jobs = (self._job(learner, ins) for learner, ins in instructions.items())
        if self._pool is not None:
            for reply, state in self._pool.run(list(jobs), deadline):
                self._keep_state(reply.learner, state)
                yield reply
            return
        assert self._runtime is not None
        for job in jobs:
            if time.monotonic() >= deadline:
                reason = f"timeout: learner {job.learner} was not started before the round deadline"
                yield failed_reply(job, reason)
                continue
            reply, state = run_learner(self._runtime, job)
            self._keep_state(job.learner, state)
            yield reply

    def _job(self, learner: LearnerId, instruction: Instruction) -> LearnerJob:
        if learner not in self._partition:
            raise KeyError(f"unknown learner {learner!r}")
        return LearnerJob(
            learner=learner,
            partition=self._partition[learner],
            num_partitions=self._num,
            instruction=instruction,
            state=self._states.get(learner),
            run_config=self._run_config,
            message_id=f"m{next(self._ids)}",
        )

    def _keep_state(self, learner: LearnerId, state: object) -> None:
        if isinstance(state, RecordDict | dict):
            self._states[learner] = state

    def state_dict(self) -> dict[str, Any]:
        # A ClientApp's RecordDict is not checkpointed; fedpilot learners' states are.
        return {"learners": {k: dict(v) for k, v in self._states.items() if isinstance(v, dict)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for learner, own in state.get("learners", {}).items():
            self._states[learner] = {name: list(arrays) for name, arrays in own.items()}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
