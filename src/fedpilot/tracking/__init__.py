"""Tracking: MLflow logging and the audit trail as Callbacks, and queries over run folders.

MLflow itself is imported only when an :class:`MLflowCallback` starts a run, so importing
this package (for ``fedpilot runs list``, say) stays fast.
"""

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
