"""Registers a completed run's model: the callback ``default_callbacks`` adds after MLflow's."""

from __future__ import annotations

import logging

from fedpilot.model_registry.gates import GateRules
from fedpilot.model_registry.lineage import lineage_of
from fedpilot.model_registry.operations import ModelRegistry
from fedpilot.orchestrator.events import Callback, RunInfo, RunResult
from fedpilot.orchestrator.interrupts import held
from fedpilot.tracking.mlflow_callback import MLflowCallback

_logger = logging.getLogger(__name__)


class RegistryCallback(Callback):
    """At the end of a *completed* run whose spec names ``registry.model_name``, registers
    the model the MLflow callback logged (its final, last stable model) as a new version
    aliased ``challenger``, with its lineage and gate rules as tags, and appends
    ``ModelRegistered`` to the run's event log (after ``RunFinished``).

    Like every observer it never stops the run: a failure is a warning and its
    :attr:`failure` (the run's ``tracking_error``). A stopped, interrupted or failed run
    registers nothing; its resume registers when it completes.

    Args:
        mlflow: The run's MLflow callback, called before this one.
    """

    def __init__(self, mlflow: MLflowCallback) -> None:
        self._mlflow = mlflow
        self._failure: str | None = None
        self.registered: tuple[str, str] | None = None
        """(model name, version) this run registered, once it has."""

    @property
    def failure(self) -> str | None:
        return self._failure

    def on_run_start(self, *, run: RunInfo) -> None:
        self._failure = None
        self.registered = None

    def on_run_end(self, *, run: RunInfo, result: RunResult) -> None:
        name = run.spec.registry.model_name
        if name is None or result.status != "completed":
            return
        logged = self._mlflow.logged_model
        if logged is None:
            self._fail(
                name,
                "the MLflow callback logged no model in a flavor (tracking or "
                "tracking.log_model off, or logging it failed)",
            )
            return
        mlflow_run_id, model_id = logged
        rules = GateRules.from_spec(run.spec)
        try:
            with held():  # a signal never cuts the registry's transaction
                lineage = lineage_of(run, result, mlflow_run_id=mlflow_run_id, rules=rules)
                registry = ModelRegistry(self._mlflow.tracking_uri)
                version = registry.register(name, model_id=model_id, lineage=lineage, rules=rules)
        except Exception as exc:  # an observer: the run's result reports it, the run goes on
            self._fail(name, f"{type(exc).__name__}: {exc}")
            return
        self.registered = (name, str(version.version))
        _logger.info("registered %s version %s (challenger)", name, version.version)

    def _fail(self, name: str, why: str) -> None:
        self._failure = f"model registry: {name!r} not registered: {why}"
        _logger.warning("%s", self._failure)


__all__ = ["RegistryCallback"]
