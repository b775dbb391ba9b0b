"""The model registry: a completed run's model as a version of a registered model in the
MLflow Model Registry (the runs' own tracking store), with its lineage, promotion gates
and the ``champion``/``challenger`` aliases.

Not :mod:`fedpilot.registry`, which maps spec names to plugin classes. MLflow is imported
only when a registry is opened.
"""

from __future__ import annotations

from fedpilot.model_registry.gates import GateDecision, GateFailure, GateRules, Measured, judge
from fedpilot.model_registry.lineage import Lineage, model_round
from fedpilot.model_registry.operations import (
    CHALLENGER,
    CHAMPION,
    GateFailed,
    ModelInfo,
    ModelRegistry,
    Promotion,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "GateDecision",
    "GateFailed",
    "GateFailure",
    "GateRules",
    "Lineage",
    "Measured",
    "ModelInfo",
    "ModelRegistry",
    "Promotion",
    "judge",
    "model_round",
]
