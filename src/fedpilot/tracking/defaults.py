"""What every run records unless its caller says otherwise."""

from __future__ import annotations

from fedpilot.audit import AuditLogCallback
from fedpilot.orchestrator.events import Callback
from fedpilot.spec import FederationSpec
from fedpilot.tracking.event_log import EventLogCallback
from fedpilot.tracking.status_file import StatusFileCallback


def default_callbacks(spec: FederationSpec, *, tracking_uri: str | None = None) -> list[Callback]:
    """The event log (``events.jsonl``), the signed audit log (``audit.jsonl``),
    ``status.json`` and, if the spec enables it,
    MLflow: the observers ``fedpilot run``, ``fedpilot server`` and the Flower ServerApp
    give every run, before their own.

    Args:
        spec: The run's spec (``tracking.enabled`` decides MLflow).
        tracking_uri: The MLflow store, if not the spec's (a resumed run's own store).

    Returns:
        New callbacks, in the order they should be called.
    """
    callbacks: list[Callback] = [EventLogCallback(), AuditLogCallback()]
    if spec.tracking.enabled:
        # Imported only then: the MLflow callback is the heavy one.
        from fedpilot.tracking.mlflow_callback import MLflowCallback

        callbacks.append(MLflowCallback(tracking_uri=tracking_uri))
    # The status file after MLflow: its last write has the run's result with whatever
    # became of its tracking.
    callbacks.append(StatusFileCallback())
    return callbacks
