"""Round loops, checkpoints and the events they emit."""

from fedpilot.orchestrator.centralized import run_centralized
from fedpilot.orchestrator.checkpoint import RunState, load_checkpoint, save_checkpoint
from fedpilot.orchestrator.events import (
    Callback,
    CallbackList,
    RoundRecord,
    RoundSummary,
    RunInfo,
    RunResult,
    UpdateVerdict,
)
from fedpilot.orchestrator.run import load_run_spec, run_federation
from fedpilot.orchestrator.sync import RoundParts, SyncOrchestrator

__all__ = [
    "Callback",
    "CallbackList",
    "RoundParts",
    "RoundRecord",
    "RoundSummary",
    "RunInfo",
    "RunResult",
    "RunState",
    "SyncOrchestrator",
    "UpdateVerdict",
    "load_checkpoint",
    "load_run_spec",
    "run_centralized",
    "run_federation",
    "save_checkpoint",
]
