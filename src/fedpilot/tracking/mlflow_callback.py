"""MLflow tracking of a federation: one MLflow run per fedpilot run.

The callback talks to MLflow through an :class:`mlflow.MlflowClient` bound to the spec's
tracking URI and an explicit run id, never through the fluent API's active run, so several
federations in one process (tests, HPO) each keep their own run. MLflow is imported
lazily: importing :mod:`fedpilot.tracking` stays cheap for commands that never track.

Tracking is an observer: any failure is logged as a warning and the federation goes on,
and the run's result says that its tracking failed (:attr:`MLflowCallback.failure`). MLflow
writes are :func:`~fedpilot.orchestrator.interrupts.held` sections: Ctrl-C or SIGTERM never
cuts a SQLite transaction. A resumed run logs the rounds of its checkpoint that the
MLflow run lacks (a signal came between a round's checkpoint and its log), and never logs
a round twice.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec

import numpy as np
import yaml

import fedpilot
from fedpilot.orchestrator.events import (
    Callback,
    PrivacyLoss,
    RoundRecord,
    RoundSummary,
    RunInfo,
    RunResult,
    RunStatus,
)
from fedpilot.orchestrator.interrupts import held
from fedpilot.rundir import RunDir
from fedpilot.tracking import _mlflow_utils as mu
from fedpilot.tracking._mlflow_flavors import flavor_logger
from fedpilot.types import RoundContext, Weights

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from fedpilot.tasks._base import Task

MODEL_ARTIFACT_PATH = "model"
"""Name of the logged model (``runs:/<mlflow-run-id>/model`` loads it)."""

# A stopped run ended on purpose before its last round and can be resumed: to MLflow,
# like an interrupted one, it was killed (MLflow has no status for "paused").
_TERMINAL_STATUS: dict[RunStatus, str] = {
    "completed": "FINISHED",
    "stopped": "KILLED",
    "interrupted": "KILLED",
    "failed": "FAILED",
}

_logger = logging.getLogger(__name__)
_P = ParamSpec("_P")


def _guarded(
    hook: Callable[Concatenate[MLflowCallback, _P], None],
) -> Callable[Concatenate[MLflowCallback, _P], None]:
    """Turns any exception of a hook into a warning and the callback's :attr:`failure`:
    tracking never stops a federation. No signal cuts the hook (its writes are held)."""

    @functools.wraps(hook)
    def wrapper(self: MLflowCallback, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            with held():
                hook(self, *args, **kwargs)
        except Exception as exc:
            self._fail(hook.__name__, exc)
            _logger.warning(
                "MLflow tracking failed in %s (%s: %s); the federation goes on",
                hook.__name__,
                type(exc).__name__,
                exc,
            )

    return wrapper


class MLflowCallback(Callback):
    """Logs a federation to MLflow: spec as params, rounds as metrics, the final model.

    Layout of the MLflow run (experiment ``spec.tracking.experiment or spec.name``):

    - params: the resolved spec flattened to dotted keys (``local.lr``, ``data.partition.kind``)
    - tags: ``fedpilot.spec_hash``, ``fedpilot.version``, ``fedpilot.mode``,
      ``fedpilot.run_dir``, ``fedpilot.run_id``, ``fedpilot.status``,
      ``mlflow.source.git.commit`` (when started inside a git checkout); at the end
      ``fedpilot.error`` (why a run failed) or ``fedpilot.reason`` (why it was stopped or
      interrupted); ``fedpilot.warning.<code>``: the latest warning of each code
    - metrics per round (step = round): ``global.<m>``, ``candidate.<m>``, ``train_loss``,
      ``participants``, ``accepted``, ``rejected_updates``, ``failed_updates``,
      ``round_duration_s``, ``bytes_sent``, ``bytes_received``, ``rolled_back``,
      ``learner.<id>.<m>``; at the end ``final.<m>`` and ``rollbacks``
    - artifacts: ``spec.yaml``, ``history.csv``, and the model ``model`` (the Task's
      ``log_model`` hook, or its ``model_artifact`` through that MLflow flavor), or
      ``model/weights.npz`` when there is no Task to build it or logging it failed

    Args:
        tracking_uri: Overrides ``spec.mlflow_uri()``.
        experiment: Overrides ``spec.tracking.experiment or spec.name``.
        run_tags: Tags a new MLflow run is created with (``fedpilot tune``'s trials:
            ``mlflow.parentRunId``, which nests them under the study's run).
    """

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_tags: Mapping[str, str] | None = None,
    ) -> None:
        self._uri_override = tracking_uri
        self._run_tags = dict(run_tags or {})
        self._experiment_override = experiment
        self._client: MlflowClient | None = None
        self._uri = ""
        self._experiment_id = ""
        self._run_id: str | None = None
        self._params: dict[str, str] = {}
        self._logged_rounds: set[int] = set()
        self._failure: str | None = None
        self._logged_model: tuple[str, str] | None = None

    @property
    def logged_model(self) -> tuple[str, str] | None:
        """(MLflow run id, LoggedModel id) of the model the last run end logged in its
        flavor, or None (not logged, or only as raw weights): what the registry registers."""
        return self._logged_model

    @property
    def tracking_uri(self) -> str:
        """The store the run logs to (empty before a run starts)."""
        return self._uri

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run being logged to, or None outside a run (or if tracking is off)."""
        return self._run_id

    @property
    def failure(self) -> str | None:
        """Why tracking failed in this run (the first failure), or None."""
        return self._failure

    def _fail(self, what: str, exc: Exception) -> None:
        if self._failure is None:
            self._failure = f"MLflow tracking failed in {what} ({type(exc).__name__}: {exc})"

    # -- hooks -----------------------------------------------------------------------

    @_guarded
    def on_run_start(self, *, run: RunInfo) -> None:
        """Creates (or, on resume, reopens) the MLflow run and logs the spec."""
        self._run_id = None
        self._failure = None
        self._logged_model = None
        spec = run.spec
        if not spec.tracking.enabled:
            return
        from mlflow import MlflowClient

        self._uri = self._uri_override or spec.mlflow_uri()
        mu.prepare_store(self._uri)
        client = self._client = MlflowClient(tracking_uri=self._uri)
        experiment = self._experiment_override or spec.tracking.experiment or spec.name
        self._experiment_id = self._ensure_experiment(client, experiment)
        resolved = spec.resolved()
        self._params = mu.flatten_params(resolved)
        run_id, logged_params = self._open_run(client, run)
        self._run_id = run_id
        self._logged_rounds = self._log_missing_rounds(client, run_id, run.history)

        from mlflow.entities import Param, RunTag

        new_params = [Param(k, v) for k, v in self._params.items() if k not in logged_params]
        changed = sorted(k for k, v in self._params.items() if logged_params.get(k, v) != v)
        if changed:
            # MLflow params are immutable; the spec_hash tag below shows the change.
            _logger.warning(
                "resumed run %s has a changed spec; MLflow keeps the old values of %s",
                run.run_id,
                ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else ""),
            )
        for batch in mu.chunked(new_params, mu.MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, params=batch)
        tags = [RunTag(k, v) for k, v in self._start_tags(run).items()]
        for tag_batch in mu.chunked(tags, mu.MAX_PARAMS_TAGS_PER_BATCH):
            client.log_batch(run_id, tags=tag_batch)
        client.log_text(run_id, yaml.safe_dump(resolved, sort_keys=False), "spec.yaml")

    @_guarded
    def on_round_end(self, *, ctx: RoundContext, summary: RoundSummary) -> None:
        """Logs the round's metrics at ``step = round`` in one batch."""
        if self._run_id is None or summary.round in self._logged_rounds:
            return  # a round redone after a resume from an older checkpoint: logged once
        self._log_metrics(mu.round_metrics(summary), step=summary.round)

    @_guarded
    def on_privacy_spent(self, *, round: int, spent: PrivacyLoss) -> None:
        """Logs ``privacy.epsilon`` (and the clip the next round uses) at ``step = round``."""
        if self._run_id is None:
            return
        metrics = {"privacy.epsilon": spent.epsilon, "privacy.clip_norm": spent.clip_norm}
        self._log_metrics(metrics, step=round)

    @_guarded
    def on_warning(self, *, round: int, code: str, message: str) -> None:
        """Tags the run with the warning: one tag per code, its latest message."""
        if self._run_id is None:
            return
        key = mu.safe_key(f"fedpilot.warning.{code}")
        value = mu.truncate(f"round {round}: {message}", mu.MAX_TAG_VALUE_LENGTH)
        self._set_tags({key: value})

    @_guarded
    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        """Logs final metrics, history and model, then ends the MLflow run."""
        if self._run_id is None or self._client is None:
            return
        client, run_id = self._client, self._run_id
        step = result.history[-1].round if result.history else result.rounds_completed
        try:
            final = mu.prefixed("final.", result.final_metrics)
            final["rollbacks"] = float(result.rollbacks)
            self._attempt("final metrics", lambda: self._log_metrics(final, step=step))
            tags = {
                "fedpilot.status": result.status,
                "fedpilot.rounds_completed": str(result.rounds_completed),
            }
            if result.error:
                key = "fedpilot.error" if result.status == "failed" else "fedpilot.reason"
                tags[key] = mu.truncate(result.error, mu.MAX_TAG_VALUE_LENGTH)
            self._attempt("status tags", lambda: self._set_tags(tags))
            self._attempt(
                "history.csv",
                lambda: client.log_text(run_id, mu.history_csv(result.history), "history.csv"),
            )
            if result.weights:
                self._log_final_model(run, result.weights, step=step)
        finally:
            self._run_id = None
            client.set_terminated(run_id, status=_TERMINAL_STATUS.get(result.status, "FAILED"))

    # -- run and experiment ----------------------------------------------------------

    def _ensure_experiment(self, client: MlflowClient, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                created: str = client.create_experiment(
                    name, artifact_location=mu.artifact_location(self._uri, name)
                )
                return created
            except MlflowException:
                # Another process created it between our lookup and create.
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        experiment_id: str = experiment.experiment_id
        return experiment_id

    def _open_run(self, client: MlflowClient, run: RunInfo) -> tuple[str, Mapping[str, str]]:
        """The MLflow run id and the params it already has (empty for a new run)."""
        id_file = RunDir(run.run_dir).mlflow_run_id
        if id_file.is_file():
            stored = id_file.read_text(encoding="utf-8").strip()
            try:
                existing = client.get_run(stored)
            except Exception as exc:
                _logger.warning(
                    "MLflow run %s of %s is gone from %s (%s); starting a new MLflow run",
                    stored,
                    run.run_id,
                    self._uri,
                    exc,
                )
            else:
                if existing.info.lifecycle_stage == "deleted":
                    client.restore_run(stored)
                if existing.info.status != "RUNNING":
                    client.update_run(stored, status="RUNNING")
                return stored, dict(existing.data.params)
        created = client.create_run(
            self._experiment_id, run_name=run.run_id, tags=self._run_tags or None
        )
        new_id: str = created.info.run_id
        run.run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(new_id + "\n", encoding="utf-8")
        return new_id, {}

    def _log_missing_rounds(
        self, client: MlflowClient, run_id: str, history: tuple[RoundRecord, ...]
    ) -> set[int]:
        """Logs the checkpoint's rounds that the MLflow run lacks, from their records;
        returns the rounds it has now."""
        logged = {int(m.step) for m in client.get_metric_history(run_id, mu.ROUND_MARKER)}
        for record in history:
            if record.round not in logged:
                self._log_metrics(mu.record_metrics(record), step=record.round)
                logged.add(record.round)
        return logged

    def _start_tags(self, run: RunInfo) -> dict[str, str]:
        tags = {
            "fedpilot.spec_hash": run.spec.digest(),
            "fedpilot.version": fedpilot.__version__,
            "fedpilot.mode": run.mode,
            "fedpilot.run_dir": str(run.run_dir.resolve()),
            "fedpilot.run_id": run.run_id,
            "fedpilot.start_round": str(run.start_round),
            "fedpilot.status": "running",
        }
        commit = mu.git_commit()
        if commit is not None:
            tags["mlflow.source.git.commit"] = commit
        return tags

    # -- logging -----------------------------------------------------------------------

    def _attempt(self, what: str, action: Callable[[], object], *, fallback: bool = False) -> bool:
        """Runs one logging step; a failure is a warning (and the callback's failure,
        unless a ``fallback`` follows), and the next steps still run."""
        try:
            action()
        except Exception as exc:
            if not fallback:
                self._fail(f"logging {what}", exc)
            _logger.warning(
                "MLflow tracking could not log %s (%s: %s)", what, type(exc).__name__, exc
            )
            return False
        return True

    def _log_metrics(self, metrics: Mapping[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        assert self._client is not None and self._run_id is not None
        timestamp = int(time.time() * 1000)
        entries = [Metric(key, value, timestamp, step) for key, value in metrics.items()]
        for batch in mu.chunked(entries, mu.MAX_METRICS_PER_BATCH):
            self._client.log_batch(self._run_id, metrics=batch)

    def _set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        assert self._client is not None and self._run_id is not None
        self._client.log_batch(self._run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def _log_final_model(self, run: RunInfo, weights: Weights, *, step: int) -> None:
        task = run.task
        if task is not None and run.spec.tracking.log_model:
            logged = self._attempt(
                "the final model",
                lambda: self._log_flavored_model(run, task, weights, step),
                fallback=True,
            )
            if logged:
                return
            _logger.warning(
                "logging the raw weights as %s/weights.npz instead", MODEL_ARTIFACT_PATH
            )
        self._attempt("the final weights", lambda: self._log_weights(weights))

    def _log_flavored_model(self, run: RunInfo, task: Task, weights: Weights, step: int) -> None:
        """Logs the Task's model as an MLflow 3 LoggedModel named ``model`` of this run:
        through the Task's own :meth:`~fedpilot.tasks.Task.log_model` hook, or else its
        :meth:`~fedpilot.tasks.Task.model_artifact` through ``mlflow.<flavor>.log_model``.

        The LoggedModel is created with the client (explicit experiment and source run), so
        ``log_model`` neither starts a fluent run nor guesses the experiment; only the
        tracking URI has to be global during the call (see :func:`use_tracking_uri`).
        """
        from fedpilot.tasks._base import Task

        client, run_id = self._client, self._run_id
        assert client is not None and run_id is not None
        task.set_weights(weights)
        # Resolved before the LoggedModel exists: a FAILED LoggedModel named "model"
        # would hide the fallback weights under runs:/<id>/model.
        hooked = type(task).log_model is not Task.log_model
        log = task.log_model if hooked else flavor_logger(task.model_artifact())
        model = client.create_logged_model(
            experiment_id=self._experiment_id,
            name=MODEL_ARTIFACT_PATH,
            source_run_id=run_id,
            tags={"fedpilot.run_id": run.run_id, "fedpilot.spec_hash": run.spec.digest()},
            params=self._params,
        )
        try:
            with (
                mu.use_tracking_uri(self._uri),
                mu.quiet_log("mlflow.pytorch", "Saving pytorch model by Pickle"),
            ):
                log(name=MODEL_ARTIFACT_PATH, model_id=model.model_id, run_id=run_id, step=step)
            self._logged_model = (run_id, model.model_id)
        except Exception:
            self._attempt(
                "the failed model's status",
                lambda: client.finalize_logged_model(model.model_id, "FAILED"),
            )
            raise

    def _log_weights(self, weights: Weights) -> None:
        assert self._client is not None and self._run_id is not None
        with tempfile.TemporaryDirectory(prefix="fedpilot-weights-") as tmp:
            path = Path(tmp) / "weights.npz"
            np.savez(path, *weights)
            self._client.log_artifact(self._run_id, str(path), artifact_path=MODEL_ARTIFACT_PATH)
