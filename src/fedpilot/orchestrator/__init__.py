"""The round loop and its driver: one round's computation (:class:`Round`), a federation
you can drive (:class:`Federation`), checkpoints, the state protocol and the events.

Names are loaded on first use (PEP 562) so that importing the light ``events`` module
does not pull in torch, scikit-learn and Flower through the round loop. Assembling a
federation from a spec is :mod:`fedpilot.launch`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot._imports import lazy_names

if TYPE_CHECKING:
    from fedpilot.orchestrator.checkpoint import RunState, load_checkpoint, save_checkpoint
    from fedpilot.orchestrator.evaluation import Evaluator
    from fedpilot.orchestrator.events import (
        Callback,
        CallbackList,
        Decision,
        PrivacyLoss,
        RoundRecord,
        RoundSummary,
        RunInfo,
        RunResult,
        Stop,
        UpdateVerdict,
    )
    from fedpilot.orchestrator.federation import Federation, request_stop
    from fedpilot.orchestrator.interrupts import Terminated
    from fedpilot.orchestrator.phases import Phase
    from fedpilot.orchestrator.round import Round, RoundParts, RoundSettings
    from fedpilot.orchestrator.state import LearnerStates, Stateful, StateRegistry

_WHERE = {
    "RunState": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Evaluator": "evaluation",
    "Callback": "events",
    "CallbackList": "events",
    "Decision": "events",
    "RoundRecord": "events",
    "RoundSummary": "events",
    "RunInfo": "events",
    "PrivacyLoss": "events",
    "RunResult": "events",
    "Stop": "events",
    "UpdateVerdict": "events",
    "Federation": "federation",
    "Terminated": "interrupts",
    "request_stop": "federation",
    "Phase": "phases",
    "Round": "round",
    "RoundParts": "round",
    "RoundSettings": "round",
    "LearnerStates": "state",
    "StateRegistry": "state",
    "Stateful": "state",
}


__getattr__ = lazy_names(__name__, _WHERE)

__all__ = [
    "Callback",
    "CallbackList",
    "Decision",
    "Evaluator",
    "Federation",
    "LearnerStates",
    "Phase",
    "PrivacyLoss",
    "Round",
    "RoundParts",
    "RoundRecord",
    "RoundSettings",
    "RoundSummary",
    "RunInfo",
    "RunResult",
    "RunState",
    "StateRegistry",
    "Stateful",
    "Stop",
    "Terminated",
    "UpdateVerdict",
    "load_checkpoint",
    "request_stop",
    "save_checkpoint",
]
