"""Flower's deployment engine as a fleet: SuperLink on the server, SuperNodes on learners.

Importing this package does not import the ServerApp/ClientApp components (:mod:`.apps`),
which Flower loads by name in its own processes.
"""

from fedpilot.fleet.flower.fleet import FlowerFleet, learner_id

__all__ = ["FlowerFleet", "learner_id"]
