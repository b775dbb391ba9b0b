"""Fleets: how instructions reach learners (only fleet/ and learner/ import Flower).

The fleets load lazily: a learner machine's ``fedpilot learner`` imports
``fedpilot.deployment`` and must not pay for torch, which LocalFleet's learners need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpilot._imports import lazy_names
from fedpilot.fleet._base import Fleet, FleetStopped

if TYPE_CHECKING:
    from fedpilot.fleet.apps import LearnerSource
    from fedpilot.fleet.local import LocalFleet

__getattr__ = lazy_names(__name__, {"LearnerSource": "apps", "LocalFleet": "local"})


__all__ = ["Fleet", "FleetStopped", "LearnerSource", "LocalFleet"]
