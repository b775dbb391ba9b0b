"""Strategies: federated optimisation algorithms that describe what they need.

:data:`STRATEGIES` holds the built-in ones by ``strategy.name``; :func:`build_strategy`
turns the spec's ``strategy`` section into a :class:`Strategy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedpilot.registry import Registry
from fedpilot.spec.sections import Section
from fedpilot.strategy._base import Strategy, TransformRef
from fedpilot.strategy.builtin import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedNova,
    FedProx,
    FedYogi,
    Scaffold,
)

STRATEGIES: Registry[Strategy[Any]] = Registry("strategy", Strategy, field="strategy.name")
"""Built-in strategies by their ``strategy.name``."""

for _cls in (FedAvg, FedProx, FedAvgM, FedAdam, FedYogi, FedAdagrad, Scaffold, FedNova):
    STRATEGIES.add(_cls.Params.model_fields["name"].default, _cls)


def build_strategy(section: Section, *, base_dir: Path | None = None) -> Strategy[Any]:
    """The strategy the spec's ``strategy`` section configures.

    Raises:
        SpecError: the section's ``name`` names no strategy (``strategy.name``).
    """
    cls = STRATEGIES.resolve(str(getattr(section, "name", "")), base_dir=base_dir)
    return cls(section)


__all__ = [
    "STRATEGIES",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedNova",
    "FedProx",
    "FedYogi",
    "Scaffold",
    "Strategy",
    "TransformRef",
    "build_strategy",
]
