"""What every run records unless its caller says otherwise."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fedpilot.audit import AuditLogCallback
from fedpilot.orchestrator.events import Callback
from fedpilot.spec import FederationSpec
from fedpilot.tracking.event_log import EventLogCallback
from fedpilot.tracking.status_file import StatusFileCallback

_logger = logging.getLogger(__name__)


def default_callbacks(
    spec: FederationSpec,
    *,
    tracking_uri: str | None = None,
    mlflow_tags: Mapping[str, str] | None = None,
) -> list[Callback]:
    """The event log (``events.jsonl``), the signed audit log (``audit.jsonl``),
    ``status.json`` and, if the spec enables it, MLflow (with the model registry's
    callback when ``registry.model_name`` is set): the observers ``fedpilot run``,
    ``fedpilot server`` and the Flower ServerApp
    give every run, before their own.

    Args:
        spec: The run's spec (``tracking.enabled`` decides MLflow).
        tracking_uri: The MLflow store, if not the spec's (a resumed run's own store).
        mlflow_tags: Tags a new MLflow run starts with (a tuning trial's parent run).

    Returns:
        New callbacks, in the order they should be called.
    """
    callbacks: list[Callback] = [EventLogCallback(), AuditLogCallback()]
    if spec.tracking.enabled:
        # Imported only then: the MLflow callback is the heavy one.
        from fedpilot.tracking.mlflow_callback import MLflowCallback

        mlflow = MLflowCallback(tracking_uri=tracking_uri, run_tags=mlflow_tags)
        callbacks.append(mlflow)
        if spec.registry.model_name is not None:
            # After MLflow: it registers the model MLflow's callback logged at the run's end.
            from fedpilot.model_registry.callback import RegistryCallback

            callbacks.append(RegistryCallback(mlflow))
    elif spec.registry.model_name is not None:
        _logger.warning(
            "registry.model_name=%r is set but tracking is off: the run registers no model",
            spec.registry.model_name,
        )
    # The status file after MLflow: its last write has the run's result with whatever
    # became of its tracking.
    callbacks.append(StatusFileCallback())
    return callbacks
