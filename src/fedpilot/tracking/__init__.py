"""Tracking: MLflow logging and the audit trail as Callbacks, and queries over run folders.

Names are loaded on first use (PEP 562): a run that only writes the event log does not
import the run-folder queries or the MLflow callback, and MLflow itself is imported only
when an :class:`MLflowCallback` starts a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot._imports import lazy_names

if TYPE_CHECKING:
    from fedpilot.tracking.event_log import EVENTS_FILE, EventLogCallback, to_json
    from fedpilot.tracking.mlflow_callback import (
        MLFLOW_RUN_ID_FILE,
        MODEL_ARTIFACT_PATH,
        MLflowCallback,
    )
    from fedpilot.tracking.store import (
        SPEC_FILE,
        STATUS_FILE,
        RoundRow,
        RunDetail,
        RunRecord,
        StatusFile,
        find_run_dir,
        list_runs,
        show_run,
    )

_WHERE = {
    "EVENTS_FILE": "event_log",
    "EventLogCallback": "event_log",
    "to_json": "event_log",
    "MLFLOW_RUN_ID_FILE": "mlflow_callback",
    "MODEL_ARTIFACT_PATH": "mlflow_callback",
    "MLflowCallback": "mlflow_callback",
    "SPEC_FILE": "store",
    "STATUS_FILE": "store",
    "RoundRow": "store",
    "RunDetail": "store",
    "RunRecord": "store",
    "StatusFile": "store",
    "find_run_dir": "store",
    "list_runs": "store",
    "show_run": "store",
}


__getattr__ = lazy_names(__name__, _WHERE)

__all__ = [
    "EVENTS_FILE",
    "MLFLOW_RUN_ID_FILE",
    "MODEL_ARTIFACT_PATH",
    "SPEC_FILE",
    "STATUS_FILE",
    "EventLogCallback",
    "MLflowCallback",
    "RoundRow",
    "RunDetail",
    "RunRecord",
    "StatusFile",
    "find_run_dir",
    "list_runs",
    "show_run",
    "to_json",
]
