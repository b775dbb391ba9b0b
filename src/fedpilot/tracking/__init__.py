"""Tracking: the audit trail, the status file and MLflow logging as Callbacks, and
queries over run folders.

Names are loaded on first use (PEP 562): a run that only writes the event log does not
import the run-folder queries or the MLflow callback, and MLflow itself is imported only
when an :class:`MLflowCallback` starts a run. The orchestrator never imports this
package: :mod:`fedpilot.launch` adds :func:`default_callbacks` to a run it assembles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot._imports import lazy_names

if TYPE_CHECKING:
    from fedpilot.tracking.defaults import default_callbacks
    from fedpilot.tracking.event_log import EventLogCallback, to_json
    from fedpilot.tracking.mlflow_callback import MODEL_ARTIFACT_PATH, MLflowCallback
    from fedpilot.tracking.status_file import StatusFile, StatusFileCallback
    from fedpilot.tracking.store import (
        RoundRow,
        RunDetail,
        RunRecord,
        RunWarning,
        find_run_dir,
        list_runs,
        show_run,
    )

_WHERE = {
    "default_callbacks": "defaults",
    "EventLogCallback": "event_log",
    "to_json": "event_log",
    "MODEL_ARTIFACT_PATH": "mlflow_callback",
    "MLflowCallback": "mlflow_callback",
    "StatusFile": "status_file",
    "StatusFileCallback": "status_file",
    "RoundRow": "store",
    "RunDetail": "store",
    "RunRecord": "store",
    "RunWarning": "store",
    "find_run_dir": "store",
    "list_runs": "store",
    "show_run": "store",
}


__getattr__ = lazy_names(__name__, _WHERE)

__all__ = [
    "MODEL_ARTIFACT_PATH",
    "EventLogCallback",
    "MLflowCallback",
    "RoundRow",
    "RunDetail",
    "RunRecord",
    "RunWarning",
    "StatusFile",
    "StatusFileCallback",
    "default_callbacks",
    "find_run_dir",
    "list_runs",
    "show_run",
    "to_json",
]
