"""Fleets: how instructions reach learners (only fleet/ and learner/ import Flower)."""

from fedpilot.fleet._base import Fleet
from fedpilot.fleet.apps import LearnerSource
from fedpilot.fleet.local import LocalFleet

__all__ = ["Fleet", "LearnerSource", "LocalFleet"]
