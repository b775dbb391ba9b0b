"""A federation from its spec: run directory, task, fleet, the round's parts, the
stateful parts' registry and the default callbacks, assembled into a
:class:`~fedpilot.orchestrator.Federation`."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedpilot._imports import import_object
from fedpilot._threads import limit_torch_threads
from fedpilot.aggregation import build_aggregator
from fedpilot.aggregation.weighting import UpdateWeighting, ValidationLoss
from fedpilot.drift import drift_monitor
from fedpilot.drift.watch import DriftWatch
from fedpilot.errors import SpecError, TaskError, UserError
from fedpilot.fleet import Fleet, LocalFleet
from fedpilot.fleet.simulation import build_simulated_fleet
from fedpilot.guard import build_guard
from fedpilot.launch.rundirs import make_run_dir, run_dir_name, run_tracking_uri
from fedpilot.learner.protocol import train_config
from fedpilot.ledger import ParticipationLog
from fedpilot.orchestrator import (
    Callback,
    CallbackList,
    Evaluator,
    Federation,
    LearnerStates,
    Round,
    RoundParts,
    RoundSettings,
    RunInfo,
    RunResult,
    RunState,
    StateRegistry,
)
from fedpilot.orchestrator.checkpoint import restore_checkpoint
from fedpilot.privacy import PrivacyBudget, learner_dp
from fedpilot.rundir import RunLock
from fedpilot.selection import LoggedSelector, build_selector
from fedpilot.spec import FederationSpec, FlowerRuntime, RayRuntime
from fedpilot.strategy import build_strategy
from fedpilot.tasks import build_task
from fedpilot.tasks._base import Task, TrainSettings
from fedpilot.tracking import default_callbacks
from fedpilot.transforms import build_transforms, state_key
from fedpilot.types import Config, Weights
from fedpilot.validation import UpdateValidator


def server_task(spec: FederationSpec) -> Task | None:
    if spec.task.name is None:
        return None
    task: Task = build_task(spec.task, spec.data, spec.seed, spec.base_dir)
    return task


def initial_weights(spec: FederationSpec, task: Task | None) -> Weights:
    if task is not None:
        try:
            return task.get_weights()
        except TaskError as exc:  # a model that cannot be built: the run cannot start
            raise SpecError(f"`task`: the model cannot be built: {exc}", field="task") from None
    source = spec.task.initial_weights
    assert source is not None  # the spec validator requires it without a task name
    if source.endswith(".npz"):
        path = spec.resolve_path(source)
        try:
            with np.load(path) as npz:
                return [npz[k] for k in sorted(npz.files, key=_npz_order)]
        # numpy says ValueError for a file that is not an .npz of plain arrays
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise SpecError(
                f"`task.initial_weights`: cannot read {str(path)!r} as an .npz of arrays: {exc}",
                field="task.initial_weights",
            ) from None
    factory = import_object(source, field="task.initial_weights", base_dir=spec.base_dir)
    weights = factory() if callable(factory) else factory
    if not isinstance(weights, list) or not all(isinstance(a, np.ndarray) for a in weights):
        raise SpecError(
            "`task.initial_weights` must give a list of numpy arrays, "
            f"got {type(weights).__name__}",
            field="task.initial_weights",
        )
    return weights


def _npz_order(key: str) -> tuple[int, str]:
    # np.savez names positional arrays arr_0, arr_1, ... (arr_10 sorts before arr_2).
    head, _, tail = key.rpartition("_")
    return (int(tail), head) if tail.isdigit() else (10**9, key)


def open_federation(
    spec: FederationSpec,
    *,
    callbacks: Sequence[Callback] = (),
    resume_dir: Path | None = None,
    default_tracking: bool = True,
    fleet: Fleet | None = None,
    run_dir: Path | None = None,
    lock: bool = True,
) -> Federation:
    """A federation ready to run round by round (see :class:`Federation`); close it
    (or use it as a context manager) to release its fleet and its run directory.

    Args:
        spec: the validated spec. With ``resume_dir`` pass the run's own spec
            (:func:`load_run_spec`).
        callbacks: extra observers (a live view, say), after the default ones.
        resume_dir: continue this run from its latest checkpoint.
        default_tracking: add the event log, status file and MLflow callbacks.
        fleet: the learners to use (closed with the federation); default :func:`build_fleet`.
        run_dir: a run directory made by :func:`new_run_dir` to start this run in.
        lock: hold the run directory's :class:`RunLock` while the federation is open
            (another process that tries to run it is refused). False only where the
            caller holds it for this run: ``fedpilot server`` for its ServerApp.

    Raises:
        RunDirInUse: another process runs this run.
        ResumeError: ``resume_dir`` has no intact checkpoint.
    """
    limit_torch_threads(spec.runtime.torch_threads)
    task = server_task(spec)
    new_dir: Path | None = None
    if resume_dir is not None:
        run_dir = resume_dir
    elif run_dir is None:
        _, run_dir = run_dir_name(spec)
        new_dir = run_dir
    with contextlib.ExitStack() as undo:  # on an error: what was taken so far, given back
        # A run directory that exists is locked before anything reads its checkpoints.
        run_lock = _lock(run_dir, undo) if lock and new_dir is None else None
        notes = _spec_notes(spec)
        if resume_dir is not None:
            restored = restore_checkpoint(run_dir)
            state = restored.state
            notes += [
                (
                    "checkpoint",
                    f"checkpoint {p.name} skipped: {why}; resumed from {restored.path.name}",
                )
                for p, why in restored.skipped
            ]
        else:
            state = RunState(round=0, weights=initial_weights(spec, task), metrics={})
        fleet = fleet if fleet is not None else build_fleet(spec)
        undo.callback(fleet.close)
        parts, registry = build_parts(spec, task, fleet, run_dir)
        # The metrics endpoint takes its port now: one it cannot have leaves no run directory.
        events = CallbackList([])  # filled below; the alerts tell it what fires
        watching = _monitoring(spec, events)
        for observer in watching:
            if (close := getattr(observer, "close", None)) is not None:
                undo.callback(close)
        # Made only now: a spec naming code, data or files that fail to load leaves none.
        if new_dir is not None:
            make_run_dir(spec, new_dir)
            run_lock = _lock(run_dir, undo) if lock else None
        tracking = default_callbacks(spec, tracking_uri=run_tracking_uri(run_dir, spec))
        # Monitoring first: the metrics a round changed are set before the alerts read
        # them, and the alerts stop before the event log closes.
        observers = [*tracking, *callbacks] if default_tracking else list(callbacks)
        events.callbacks = [*watching, *observers]
        if notes:
            events.callbacks.append(_StartNotes(events, notes))
        dp = learner_dp(parts.transforms)
        if dp is not None:
            events.callbacks.append(PrivacyBudget(dp, events))
        monitor = drift_monitor(parts.transforms)
        if monitor is not None:
            # First: the metrics and alerts see the round's drift at its end, and no other
            # observer (the caller's may end the process) comes between it and the checkpoint.
            events.callbacks.insert(0, DriftWatch(spec.drift, monitor, events))
        run = RunInfo(
            run_id=run_dir.name, run_dir=run_dir, spec=spec, start_round=state.round + 1, task=task
        )
        round_ = Round(
            parts, round_settings(spec), events=events, state=registry, run_id=run.run_id
        )
        federation = Federation(
            round=round_,
            state=state,
            registry=registry,
            callbacks=events,
            run=run,
            fleet=fleet,
            lock=run_lock,
        )
        # The accountant is restored now: a resumed run whose budget is spent runs no round.
        spent = dp.accountant.exhausted() if dp is not None else None
        if spent is not None:
            federation.stop(spent)
        undo.pop_all()  # the federation closes its fleet and releases its lock
        return federation


def _monitoring(spec: FederationSpec, events: Callback) -> list[Callback]:
    """The metrics endpoint and in-process alerts the spec asks for (none by default)."""
    if spec.runtime.metrics_port is None and spec.monitoring is None:
        return []
    from fedpilot.monitoring import observers  # prometheus-client, for runs that ask

    return observers(spec, events)


def _lock(run_dir: Path, undo: contextlib.ExitStack) -> RunLock:
    run_lock = RunLock.acquire(run_dir)
    undo.callback(run_lock.release)
    return run_lock


def _spec_notes(spec: FederationSpec) -> list[tuple[str, str]]:
    """(code, message) of what the spec asks that the run does otherwise."""
    if spec.secure_aggregation is not None and spec.weighting.scheme == "data_size":
        return [
            (
                "weighting",
                "weighting.scheme=data_size does not apply under secure_aggregation: the "
                "server learns only the sum, so the aggregate is the survivors' unweighted "
                "mean (set weighting.scheme=uniform to say so)",
            )
        ]
    return []


class _StartNotes(Callback):
    """Tells every other callback, as warnings, what a person should know about how the
    run started (a damaged checkpoint skipped on resume, a spec setting that does not
    apply): once they have all started."""

    def __init__(self, events: CallbackList, notes: list[tuple[str, str]]) -> None:
        self._events = events
        self._notes = notes

    def on_run_start(self, *, run: RunInfo) -> None:
        for code, note in self._notes:
            self._events.on_warning(round=run.start_round, code=code, message=note)
        self._notes = []


def run_federation(
    spec: FederationSpec,
    *,
    callbacks: Sequence[Callback] = (),
    resume_dir: Path | None = None,
    default_tracking: bool = True,
    fleet: Fleet | None = None,
    run_dir: Path | None = None,
    lock: bool = True,
) -> RunResult:
    """Run (or resume) a federation to its end and return how it ended (the arguments
    are :func:`open_federation`'s)."""
    with open_federation(
        spec,
        callbacks=callbacks,
        resume_dir=resume_dir,
        default_tracking=default_tracking,
        fleet=fleet,
        run_dir=run_dir,
        lock=lock,
    ) as federation:
        return federation.run()


def round_settings(spec: FederationSpec) -> RoundSettings:
    return RoundSettings(
        total_rounds=spec.rounds,
        seed=spec.seed,
        sampling=spec.sampling,
        round_timeout=spec.runtime.round_timeout,
        train_config=_train_config(spec),
    )


def _train_config(spec: FederationSpec) -> Config:
    """The train instruction's config, but for the round and the learner's seed."""
    config = train_config(TrainSettings.from_local(spec.local, seed=0), 0)
    del config["seed"]
    return config


def build_fleet(spec: FederationSpec) -> Fleet:
    """The fleet ``runtime`` names, wrapped in ``simulation``'s heterogeneity if set."""
    runtime = spec.runtime
    inner: Fleet
    if isinstance(runtime, FlowerRuntime):
        raise UserError(
            "`runtime.mode` flower runs learners on their own machines: start it with "
            "`fedpilot server SPEC`, not `fedpilot run`"
        )
    if isinstance(runtime, RayRuntime):
        from fedpilot.fleet.ray import RayFleet

        inner = RayFleet(spec)
    else:
        inner = LocalFleet(spec)
    return build_simulated_fleet(inner, spec.simulation, spec.seed)


def build_parts(
    spec: FederationSpec, task: Task | None, fleet: Fleet, run_dir: Path
) -> tuple[RoundParts, StateRegistry]:
    """Every pluggable part of a round, each built from its section of the spec, and the
    registry of those that keep state."""
    strategy = build_strategy(spec.strategy, base_dir=spec.base_dir)
    validator = UpdateValidator(
        max_examples=spec.validation.max_examples,
        declared_examples={info.id: info.declared_examples for info in fleet.learners()},
        required_metrics=strategy.required_metrics(),
        norm_outlier_z=spec.validation.norm_outlier_z,
        # The default ratio checks take updates out after the cohort is seen: not with a
        # strategy whose own streaming fold cannot (FedNova).
        **(
            {
                "max_norm_ratio": spec.validation.max_norm_ratio,
                "max_examples_ratio": spec.validation.max_examples_ratio,
            }
            if strategy.incompatibility(aggregation=spec.aggregation, cohort_checks=True) is None
            else {}
        ),
    )
    aggregator = build_aggregator(
        spec.aggregation,
        strategy,
        replies_in_order=fleet.replies_in_order,
        cohort_checks=validator.has_cohort_checks,
        workdir=run_dir,
        base_dir=spec.base_dir,
    )
    selector = build_selector(spec.selection, base_dir=spec.base_dir)
    ledger = ParticipationLog()
    if isinstance(selector, LoggedSelector):
        selector.use_ledger(ledger)  # one record of every learner, updated once a round
    parts = RoundParts(
        fleet=fleet,
        selector=selector,
        aggregator=aggregator,
        server_opt=strategy.server_optimizer(),
        validator=validator,
        weighting=UpdateWeighting(
            spec.weighting,
            ledger,
            _validation_loss(task),
            max_examples_ratio=spec.validation.max_examples_ratio,
        ),
        guard=build_guard(spec.guard, base_dir=spec.base_dir),
        evaluator=Evaluator(
            spec.evaluation,
            task=task,
            fleet=fleet,
            seed=spec.seed,
            total_rounds=spec.rounds,
            every_round=spec.guard.enabled,
            round_timeout=spec.runtime.round_timeout,
            validator=validator,
        ),
        ledger=ledger,
        learner_states=LearnerStates(),
        transforms=build_transforms(spec),
    )
    registry = StateRegistry()
    registry.register("server_opt", parts.server_opt, rollback=True)
    registry.register("selector", selector)
    registry.register("ledger", ledger)
    registry.register("fleet", fleet)
    registry.register("learner_state", parts.learner_states)
    registry.register("guard", parts.guard)  # the initial model's metrics
    for transform in parts.transforms:
        registry.register(f"transform/{state_key(transform)}", transform, rollback=True)
    dp = learner_dp(parts.transforms)
    if dp is not None:  # spent privacy stays spent: a rolled-back round's model was released
        registry.register("privacy", dp.accountant)
    monitor = drift_monitor(parts.transforms)
    if monitor is not None:  # observed data stays observed: not rolled back with a round
        registry.register("drift", monitor.state)
    return parts, registry


def _validation_loss(task: Task | None) -> ValidationLoss | None:
    validation = task.validation_data() if task is not None else None
    if task is None or validation is None or len(validation) == 0:
        return None

    def loss(weights: Weights) -> float:
        task.set_weights(weights)
        return float(task.evaluate(validation)["loss"])

    return loss
