"""RayFleet: simulated learners as Ray tasks, so a large simulation spreads over a cluster.

Each learner's round is one Ray task running :func:`~fedpilot.fleet._messages.run_learner`,
exactly what a pool worker of :class:`~fedpilot.fleet.local.LocalFleet` runs.

Tasks rather than an actor pool, because:

* Ray schedules tasks onto whatever CPUs the cluster has at that moment (an autoscaler
  may add nodes mid-run); a pool would be sized once and hold its CPUs for the whole
  run, also while the server aggregates and evaluates, starving other jobs on a
  shared cluster.
* A task stuck past the deadline is cancelled with ``force=True``, which kills its
  worker process; Ray starts a fresh one on demand. A pool needs its own replacement
  bookkeeping for that.
* Ray keeps worker processes alive between tasks of the same driver, so the learner
  runtime (torch, Flower, the user's ClientApp, cached partitions) is built once per
  worker process and kept in a small module-level cache (:func:`_runtime`), not once
  per task; it even outlives one fleet when a driver runs several federations.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from fedpilot.errors import UserError
from fedpilot.fleet._base import Fleet
from fedpilot.fleet._messages import LearnerJob, failed_reply, run_learner
from fedpilot.fleet._partitions import PartitionLearners
from fedpilot.fleet.apps import LearnerRuntime, LearnerSource
from fedpilot.spec import FederationSpec, RayRuntime
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply, Weights

if TYPE_CHECKING:
    from types import ModuleType

    from flwr.app import RecordDict

__all__ = ["RayFleet"]

_T = TypeVar("_T")
_Payload = tuple[Weights, dict[str, Weights]]
_CACHED_RUNTIMES = 2
"""Runtimes one worker process keeps: a worker serves one federation at a time, and a
driver running federations back to back (a search) reuses the last ones."""

_runtimes: OrderedDict[LearnerSource, LearnerRuntime] = OrderedDict()


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise UserError(
            f"`runtime.mode: ray` needs Ray, which is not installed ({exc}): "
            "pip install 'fedpilot[ray]'"
        ) from exc
    return ray


def _runtime(source: LearnerSource) -> LearnerRuntime:
    """This worker process's runtime for ``source``, built on first use."""
    runtime = _runtimes.get(source)
    if runtime is None:
        runtime = source.load()
        _runtimes[source] = runtime
        while len(_runtimes) > _CACHED_RUNTIMES:
            _runtimes.popitem(last=False)
    _runtimes.move_to_end(source)
    return runtime


def _run_job(
    source: LearnerSource, payload: _Payload, job: LearnerJob, torch_threads: int
) -> tuple[Reply, RecordDict | None]:
    """The Ray task: one learner's round, in a Ray worker process."""
    from fedpilot._threads import limit_torch_threads

    limit_torch_threads(torch_threads)
    weights, extras = _writable(payload)
    instruction = job.instruction
    state = _writable(instruction.state)
    job = replace(
        job, instruction=replace(instruction, weights=weights, extras=extras, state=state)
    )
    job.state = _writable(job.state)
    try:
        runtime = _runtime(source)
    except Exception as exc:  # report it as this learner's failure, like run_learner
        return failed_reply(job, f"learner could not load: {type(exc).__name__}: {exc}"), job.state
    return run_learner(runtime, job)


def _writable(value: _T) -> _T:
    """``value`` with its read-only numpy arrays copied (in lists, tuples and dicts).

    Ray hands out arrays as zero-copy, read-only views of its object store; learners
    (and the server's folding) may update arrays in place, as they can in every other
    fleet, so each side copies what it keeps: a memcpy, far cheaper than a pickle.
    """
    return cast(_T, _copy_read_only(value))


def _copy_read_only(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value if value.flags.writeable else value.copy()
    # Exact types only: a subclass (Flower's records) is left as it is, not flattened.
    if type(value) is list:
        return [_copy_read_only(item) for item in cast(list[object], value)]
    if type(value) is tuple:
        return tuple(_copy_read_only(item) for item in cast(tuple[object, ...], value))
    if type(value) is dict:
        return {k: _copy_read_only(v) for k, v in cast(dict[object, object], value).items()}
    return value


class RayFleet(Fleet):
    """``num_learners`` simulated learners, one per data partition, run as Ray tasks.

    The same learners, ids and declared sizes as :class:`~fedpilot.fleet.LocalFleet`
    for the same spec, so a spec trains the same model under ``mode: local`` and
    ``mode: ray``. Replies stream back as tasks finish (out of order); at the deadline
    unfinished tasks are cancelled (their workers killed) and fail with a timeout. A
    learner that raises, or whose worker process dies, yields a failed Reply.

    Each learner's state travels with its task (in the instruction) and comes back with
    its reply; a user ClientApp's ``context.state`` is kept here, in the driver.

    Ray: if this process is already connected to Ray, the fleet uses that connection
    and leaves it open. Otherwise it connects to ``runtime.address`` or, if unset,
    starts a local Ray instance; :meth:`close` then disconnects, which stops an
    instance it started and leaves a cluster it joined running. Learners' output goes
    to Ray's log files (``/tmp/ray/session_latest/logs``), not to this terminal.

    Args:
        spec: The federation; ``spec.runtime`` must be a :class:`RayRuntime`.

    Raises:
        UserError: Ray is not installed, or ``runtime.address`` cannot be reached
            (after Ray's own retries, which take minutes).
        SpecError: ``task.flower_clientapp`` cannot be imported.
    """

    def __init__(self, spec: FederationSpec) -> None:
        runtime = spec.runtime
        if not isinstance(runtime, RayRuntime):
            raise UserError(
                f"RayFleet needs `runtime.mode: ray`, got runtime.mode={runtime.mode!r}"
            )
        ray = _import_ray()
        self._source = LearnerSource.from_spec(spec)
        self._threads = runtime.torch_threads
        self._learners = PartitionLearners(spec)
        if spec.task.name is None:
            # Fail now, with the spec's own error, rather than once per learner in a
            # worker; importing a ClientApp is cheap (the server imported its module).
            self._source.load()
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            _init_ray(ray, runtime.address)
        # Retrying a learner after its worker died would run it twice in one round.
        self._task = ray.remote(_run_job).options(
            num_cpus=runtime.cpus_per_learner, max_retries=0, name="fedpilot-learner"
        )
        # The spec travels once to the object store, not with every task.
        self._source_ref: Any = ray.put(self._source)
        self._ray: ModuleType | None = ray

    def learners(self) -> Sequence[LearnerInfo]:
        return self._learners.infos

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        ray = self._ray
        if ray is None:
            raise RuntimeError("RayFleet is closed")
        jobs = [self._learners.job(learner, ins) for learner, ins in instructions.items()]
        pending = self._submit(ray, jobs)
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done, _ = ray.wait(list(pending), num_returns=1, timeout=remaining)
                for ref in done:
                    yield self._collect(ray, ref, pending.pop(ref))
        finally:
            # At the deadline, or abandoned mid-round (an exception upstream): stop
            # what still runs so it does not hold CPUs into the next round.
            for ref in pending:
                ray.cancel(ref, force=True)
        for job in pending.values():
            reason = f"timeout: learner {job.learner} did not reply before the round deadline"
            yield failed_reply(job, reason)

    def _submit(self, ray: ModuleType, jobs: list[LearnerJob]) -> dict[Any, LearnerJob]:
        """Start one task per job; the weights go to the object store once per dispatch.

        Instructions of one round share their weights (and extras) lists, so each
        distinct pair is put once and every task gets a reference to it.
        """
        payloads: dict[tuple[int, int], Any] = {}
        pending: dict[Any, LearnerJob] = {}
        for job in jobs:
            instruction = job.instruction
            key = (id(instruction.weights), id(instruction.extras))
            if key not in payloads:
                payloads[key] = ray.put((instruction.weights, instruction.extras))
            light = replace(job, instruction=replace(instruction, weights=[], extras={}))
            ref = self._task.remote(self._source_ref, payloads[key], light, self._threads)
            pending[ref] = job
        return pending

    def _collect(self, ray: ModuleType, ref: Any, job: LearnerJob) -> Reply:
        reply: Reply
        state: object
        try:
            reply, state = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # run_learner catches a learner's exceptions; what gets here escaped it.
            cause = exc.cause if exc.cause is not None else exc
            return failed_reply(job, f"learner raised {type(cause).__name__}: {cause}")
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.LocalRayletDiedError,
        ) as exc:
            return failed_reply(job, f"learner worker process died ({type(exc).__name__})")
        except ray.exceptions.RayError as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return failed_reply(job, f"learner failed in Ray: {type(exc).__name__}: {detail}")
        self._learners.keep_state(job.learner, _writable(state))
        return replace(
            reply,
            weights=_writable(reply.weights),
            extras=_writable(reply.extras),
            state=_writable(reply.state),
        )

    def close(self) -> None:
        ray, self._ray = self._ray, None
        self._source_ref = None  # released while Ray is still up
        if ray is not None and self._owns_connection and ray.is_initialized():
            ray.shutdown()


def _init_ray(ray: ModuleType, address: str | None) -> None:
    """Connect to ``address``, or start a quiet local instance when it is None."""
    # Ray would otherwise phone home with usage statistics; runs may be offline.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        # Without an address Ray would join the last cluster `ray start` left on this
        # machine; the spec promises a fresh local instance ("auto" joins instead).
        address = "local"
        options["include_dashboard"] = False
    with warnings.catch_warnings():
        # A notice about a future default for GPU visibility, on every start.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
        try:
            ray.init(address=address, **options)
        except (ConnectionError, ValueError) as exc:
            raise UserError(
                f"`runtime.address`: cannot connect to Ray ({exc}), got address={address!r}"
            ) from exc
