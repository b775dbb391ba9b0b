"""LocalFleet: learners on this machine, in-process or in a pool of worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fedpilot.fleet._base import Fleet
from fedpilot.fleet._messages import failed_reply, run_learner
from fedpilot.fleet._partitions import PartitionLearners
from fedpilot.fleet._pool import WorkerPool
from fedpilot.fleet.apps import LearnerSource
from fedpilot.spec import FederationSpec, LocalRuntime
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply


class LocalFleet(Fleet):
    """``num_learners`` simulated learners, one per data partition.

    With ``workers=0`` each learner runs in this process, one after another (the
    fastest mode for small models: no serialization). A learner cannot be interrupted
    in-process, so the deadline is checked between learners; learners not started by
    then fail with a timeout. With ``workers=N`` learners run in N processes and one
    that overruns the deadline is killed.

    Learners, their declared sizes and their state between rounds are
    :class:`PartitionLearners`'.
    """

    def __init__(self, spec: FederationSpec, *, workers: int | None = None) -> None:
        self._source = LearnerSource.from_spec(spec)
        if workers is None:
            workers = spec.runtime.workers if isinstance(spec.runtime, LocalRuntime) else 0
        self._workers = workers
        self._learners = PartitionLearners(spec)
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
        return self._learners.infos

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        jobs = (self._learners.job(learner, ins) for learner, ins in instructions.items())
        if self._pool is not None:
            for reply, state in self._pool.run(list(jobs), deadline):
                self._learners.keep_state(reply.learner, state)
                yield reply
            return
        assert self._runtime is not None
        for job in jobs:
            if time.monotonic() >= deadline:
                reason = f"timeout: learner {job.learner} was not started before the round deadline"
                yield failed_reply(job, reason)
                continue
            reply, state = run_learner(self._runtime, job)
            self._learners.keep_state(job.learner, state)
            yield reply

    def state_dict(self) -> dict[str, Any]:
        return self._learners.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._learners.load_state_dict(state)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
