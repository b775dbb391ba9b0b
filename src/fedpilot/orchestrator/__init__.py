"""Round loops, checkpoints and the events they emit.

Names are loaded on first use (PEP 562) so that importing the light ``events`` module
does not pull in torch, scikit-learn and Flower through the round loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot._imports import lazy_names

if TYPE_CHECKING:
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

_WHERE = {
    "run_centralized": "centralized",
    "RunState": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Callback": "events",
    "CallbackList": "events",
    "RoundRecord": "events",
    "RoundSummary": "events",
    "RunInfo": "events",
    "RunResult": "events",
    "UpdateVerdict": "events",
    "load_run_spec": "run",
    "run_federation": "run",
    "RoundParts": "sync",
    "SyncOrchestrator": "sync",
}


__getattr__ = lazy_names(__name__, _WHERE)

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
