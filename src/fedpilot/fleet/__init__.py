"""Fleets: how instructions reach learners (only fleet/ and learner/ import Flower).

The fleets load lazily: a learner machine's ``fedpilot learner`` imports
``fedpilot.fleet.flower`` and must not pay for torch, which LocalFleet's learners need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fedpilot.fleet._base import Fleet

if TYPE_CHECKING:
    from fedpilot.fleet.apps import LearnerSource
    from fedpilot.fleet.local import LocalFleet

_LAZY = {"LearnerSource": "fedpilot.fleet.apps", "LocalFleet": "fedpilot.fleet.local"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Fleet", "LearnerSource", "LocalFleet"]
