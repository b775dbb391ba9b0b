"""The centralized baseline: the same task trained on the pooled data, with the same
total local epochs (rounds × local.epochs), reported through the same callbacks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedpilot._threads import limit_torch_threads
from fedpilot.errors import SpecError
from fedpilot.launch.assemble import initial_weights, server_task
from fedpilot.launch.rundirs import new_run_dir
from fedpilot.orchestrator.events import (
    Callback,
    CallbackList,
    RoundRecord,
    RoundSummary,
    RunInfo,
    RunResult,
)
from fedpilot.rundir import RunLock
from fedpilot.spec import FederationSpec
from fedpilot.tasks._base import Task, TrainSettings
from fedpilot.tracking import default_callbacks
from fedpilot.types import RoundContext, derive_seed


def run_centralized(
    spec: FederationSpec, *, callbacks: Sequence[Callback] = (), default_tracking: bool = True
) -> RunResult:
    """Train ``spec``'s task on all learners' training data pooled, one "round" being
    ``local.epochs`` epochs, and evaluate on the server-held test set each round.
    ``callbacks`` and ``default_tracking`` are as :func:`run_federation`'s."""
    limit_torch_threads(spec.runtime.torch_threads)
    task = server_task(spec)
    if task is None:
        raise SpecError(
            "--centralized needs a fedpilot task (`task.name`); a Flower ClientApp "
            "has no pooled data to train on",
            field="task.name",
        )
    initial_weights(spec, task)  # a model that cannot be built is refused before any run dir
    pooled = task.pooled_train_data()
    test = task.central_test_data()
    _, run_dir = new_run_dir(spec, suffix="-centralized")
    with RunLock.acquire(run_dir):  # `fedpilot runs` tells a live run from a killed one
        return _run_pooled(spec, task, (pooled, test), run_dir, callbacks, default_tracking)


def _run_pooled(
    spec: FederationSpec,
    task: Task,
    data: tuple[Any, Any],
    run_dir: Path,
    callbacks: Sequence[Callback],
    default_tracking: bool,
) -> RunResult:
    pooled, test = data
    run_id = run_dir.name
    run = RunInfo(run_id=run_id, run_dir=run_dir, spec=spec, task=task, mode="centralized")
    observers = CallbackList(
        [*default_callbacks(spec), *callbacks] if default_tracking else list(callbacks)
    )
    observers.on_run_start(run=run)
    history: list[RoundRecord] = []
    metrics = {}
    for round_ in range(1, spec.rounds + 1):
        started = time.perf_counter()
        ctx = RoundContext(run_id=run_id, round=round_, total_rounds=spec.rounds, seed=spec.seed)
        observers.on_round_start(ctx=ctx, participants=("pooled",))
        settings = TrainSettings.from_local(
            spec.local, seed=derive_seed(spec.seed, round_, "centralized-training")
        )
        train_metrics = task.train(pooled, settings)
        metrics = task.evaluate(test) if test is not None and len(test) else {}
        summary = RoundSummary(
            round=round_,
            status="completed",
            participants=("pooled",),
            accepted=("pooled",),
            rejected={},
            failed={},
            train_loss=train_metrics.get("loss"),
            candidate_metrics=dict(metrics),
            global_metrics=dict(metrics),
            learner_metrics={},
            duration=time.perf_counter() - started,
            bytes_sent=0,
            bytes_received=0,
        )
        history.append(summary.record())
        observers.on_round_end(ctx=ctx, summary=summary)
    result = RunResult(
        status="completed",
        rounds_completed=spec.rounds,
        final_metrics=dict(metrics),
        rollbacks=0,
        weights=task.get_weights(),
        history=tuple(history),
    )
    observers.on_run_end(run=run, result=result)
    return result
