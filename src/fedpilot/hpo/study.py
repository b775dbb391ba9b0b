"""A study of federations: Optuna's study in an RDB storage, its trials run by
:func:`run_trial`, the best trial's spec written beside the runs.

The study's size is a total: ``tune(spec, trials=N)`` runs trials until the study holds N
finished (complete or pruned) ones, so a resumed study goes on from its next trial number
and several processes (on one machine or several, sharing the storage) fill one study
together. A process takes a trial only while fewer than N are finished or running; two
that take one at the same moment are told apart by trial number (unique in the storage),
and the later one's trial ends FAIL without running (user attr ``skipped``). Failed trials
(values the spec refuses across fields, a federation that failed) do not count, but a study
whose failed trials outnumber its N stops: a space that always fails ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import yaml

from fedpilot.errors import UserError
from fedpilot.hpo.space import applied
from fedpilot.hpo.trial import Objectives, RoundObserver, TrialFailed, run_trial
from fedpilot.spec import FederationSpec

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

TrialObserver = Callable[[optuna.Study, "FrozenTrial"], None]


def default_storage(spec: FederationSpec) -> str:
    """The SQLite file beside the runs: ``<output_dir>/tune.db``."""
    return f"sqlite:///{(spec.output_dir / 'tune.db').resolve()}"


def best_spec_path(spec: FederationSpec, study_name: str) -> Path:
    return spec.output_dir / f"{study_name}-best.yaml"


@dataclass
class TuneResult:
    study: optuna.Study
    best_spec: Path | None
    """The best trial's resolved spec (None when no trial completed)."""
    trials_run: list[int] = field(default_factory=list)
    """The numbers of the trials this process ran."""


def tune(
    spec: FederationSpec,
    *,
    trials: int,
    timeout: float | None = None,
    study_name: str | None = None,
    storage: str | None = None,
    observe_round: RoundObserver | None = None,
    observe_trial: TrialObserver | None = None,
) -> TuneResult:
    """Runs ``spec``'s study until it holds ``trials`` finished trials (or ``timeout``
    seconds passed) and writes the best trial's spec.

    Raises:
        UserError: the spec has no ``tune.space``, or the storage cannot be opened.
        KeyboardInterrupt: a trial's run was interrupted.
    """
    tune_spec = spec.tune
    if tune_spec is None or not tune_spec.space:
        raise UserError("`tune.space`: the spec declares nothing to tune; add a `tune:` section")
    if trials < 1:
        raise UserError(f"--trials must be >= 1, got trials={trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name or spec.name
    url = storage or default_storage(spec)
    objectives = Objectives(
        metric=tune_spec.guarded_metric(spec),
        names=tuple(o.metric for o in tune_spec.objectives or ()),
        prune=not tune_spec.objectives and tune_spec.resolved_pruner().name != "none",
    )
    with _creating(url):
        study = optuna.create_study(
            study_name=name,
            storage=_storage(url),
            sampler=_sampler(spec),
            pruner=_pruner(spec),
            load_if_exists=True,
            **_directions(spec),
        )
        # Under the same lock: two processes starting a study make one parent run.
        parent = _parent_run(spec, study)
    result = TuneResult(study, None)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    taken = (*finished, optuna.trial.TrialState.RUNNING)

    fail: Any = [_FAIL] * len(study.directions) if len(study.directions) > 1 else _FAIL

    def objective(trial: optuna.Trial) -> Any:
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        ahead = [t for t in before if t.state in taken]
        failed = [
            t
            for t in before
            if t.state == optuna.trial.TrialState.FAIL and "skipped" not in t.user_attrs
        ]
        # Failed trials do not count towards `trials`, so without a bound a space whose
        # every point fails would draw failed trials forever.
        if len(ahead) >= trials or len(failed) > trials:
            study.stop()
            why = "its" if len(ahead) >= trials else "more failed trials than its"
            trial.set_user_attr("skipped", f"the study had {why} {trials} trials")
            return fail
        result.trials_run.append(trial.number)
        try:
            return run_trial(
                trial, spec, objectives=objectives, parent_run_id=parent, observe=observe_round
            )
        except TrialFailed as exc:
            if "error" not in trial.user_attrs:
                trial.set_user_attr("error", str(exc)[:500])
            return fail

    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        optuna.study.MaxTrialsCallback(trials, states=taken)
    ]
    if observe_trial is not None:
        callbacks.append(observe_trial)
    try:
        if len(study.get_trials(deepcopy=False, states=taken)) < trials:
            study.optimize(objective, timeout=timeout, callbacks=callbacks)
    except BaseException:  # Ctrl-C: the study's run did not finish
        _end_parent_run(spec, parent, study, status="KILLED")
        raise
    _end_parent_run(spec, parent, study, status="FINISHED")
    result.best_spec = _write_best(spec, study, name)
    return result


_FAIL = float("nan")
"""What a trial that failed (or was skipped) returns: Optuna marks it FAIL with a one-line
warning, where a raised exception would print its traceback on ``fedpilot tune``'s stderr.
The reason is the trial's user attr ``error`` (or ``skipped``)."""


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial of a single-objective study, the Pareto front of a multi-objective
    one; empty while no trial completed."""
    if len(study.directions) > 1:
        return list(study.best_trials)
    try:
        return [study.best_trial]
    except ValueError:
        return []


def _write_best(spec: FederationSpec, study: optuna.Study, name: str) -> Path | None:
    best = best_trials(study)
    if not best:
        return None
    path = best_spec_path(spec, name)
    text = yaml.safe_dump(applied(spec, best[0].params).resolved(), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: another process of the study may write it at the same time.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
    return path


# -- Optuna's parts ----------------------------------------------------------------------


def _storage(url: str) -> optuna.storages.RDBStorage:
    # SQLite: wait for another process's write instead of failing at once. The heartbeat
    # lets a process fail the RUNNING trials of one that was killed.
    engine: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=20, grace_period=90
            )
    except Exception as exc:  # SQLAlchemy's errors for a bad URL are many
        raise UserError(
            f"--storage {url!r} cannot be opened: {type(exc).__name__}: {exc}"
        ) from None


@contextlib.contextmanager
def _creating(url: str) -> Iterator[None]:
    """One process at a time creates a SQLite storage's tables and the study: Optuna's
    table creation is not safe against a second process doing the same."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        yield
        return
    db = Path(url[len(prefix) :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _directions(spec: FederationSpec) -> dict[str, Any]:
    tune = spec.tune
    assert tune is not None
    if tune.objectives:
        return {"directions": [o.direction for o in tune.objectives]}
    return {"direction": tune.study_direction(spec)}


def _sampler(spec: FederationSpec) -> optuna.samplers.BaseSampler:
    assert spec.tune is not None
    sampler = spec.tune.sampler
    seed = spec.seed if sampler.seed is None else sampler.seed

    def make(trial_seed: int) -> optuna.samplers.BaseSampler:
        if sampler.name == "random":
            return optuna.samplers.RandomSampler(seed=trial_seed)
        # constant_liar: a trial running in another process counts as a bad result, so
        # processes sharing a study do not all sample the same region.
        return optuna.samplers.TPESampler(seed=trial_seed, constant_liar=True)

    return _TrialSeeded(make, seed)


class _TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler seeded afresh for each trial from the study's seed and the trial's
    number: a study is reproducible, a resumed one samples as an uninterrupted one
    would, and processes sharing a study (each trial number taken once) never draw the
    same random numbers."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        state = np.random.SeedSequence([self._seed, trial.number]).generate_state(1)
        self._inner = self._make(int(state[0]))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self._inner.sample_independent(study, trial, name, dist)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def _pruner(spec: FederationSpec) -> optuna.pruners.BasePruner:
    assert spec.tune is not None
    pruner = spec.tune.resolved_pruner()
    if pruner.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_rounds
        )
    if pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_rounds,
            max_resource=spec.rounds,
            reduction_factor=pruner.reduction_factor,
        )
    if pruner.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_rounds, reduction_factor=pruner.reduction_factor
        )
    return optuna.pruners.NopPruner()


# -- MLflow: the study's parent run -------------------------------------------------------

_PARENT_ATTR = "mlflow_parent_run_id"


def _parent_run(spec: FederationSpec, study: optuna.Study) -> str | None:
    """The MLflow run the study's trials nest under: made by the study's first process
    and kept in the study's user attrs (a later process reopens it)."""
    if not spec.tracking.enabled:
        return None
    from mlflow import MlflowClient

    from fedpilot.tracking import _mlflow_utils as mu

    uri = spec.mlflow_uri()
    mu.prepare_store(uri)
    client = MlflowClient(tracking_uri=uri)
    known = study.user_attrs.get(_PARENT_ATTR)
    if isinstance(known, str):
        with contextlib.suppress(Exception):
            client.update_run(known, status="RUNNING")
            return known
    experiment = spec.tracking.experiment or spec.name
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        try:
            experiment_id = client.create_experiment(
                experiment, artifact_location=mu.artifact_location(uri, experiment)
            )
        except Exception:  # another process made it meanwhile
            made = client.get_experiment_by_name(experiment)
            if made is None:
                raise
            experiment_id = made.experiment_id
    run = client.create_run(
        experiment_id,
        run_name=f"tune-{study.study_name}",
        tags={"fedpilot.mode": "tune", "fedpilot.study": study.study_name},
    )
    parent: str = run.info.run_id
    study.set_user_attr(_PARENT_ATTR, parent)
    return parent


def _end_parent_run(
    spec: FederationSpec, parent: str | None, study: optuna.Study, *, status: str
) -> None:
    """Logs the best value so far to the parent run and ends it with ``status``
    (``FINISHED``, or ``KILLED`` when interrupted; a process that resumes the study
    reopens it)."""
    if parent is None:
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=spec.mlflow_uri())
    best = best_trials(study)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if best and best[0].values:
        for i, value in enumerate(best[0].values):
            key = "best_value" if i == 0 else f"best_value_{i}"
            client.log_metric(parent, key, value, step=len(done))
        client.set_tag(parent, "fedpilot.best_trial", str(best[0].number))
    client.set_terminated(parent, status=status)


__all__ = ["TuneResult", "best_spec_path", "best_trials", "default_storage", "tune"]
