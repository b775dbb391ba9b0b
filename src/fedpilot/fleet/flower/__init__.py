"""Flower's deployment engine as a fleet: the orchestrator runs as the ServerApp and
reaches learners' SuperNodes through the SuperLink (:mod:`.fleet`, :mod:`.apps`).

Nothing is imported here: Flower loads the ServerApp/ClientApp components (:mod:`.apps`)
by name. The processes themselves (SuperLink, SuperNode, server) are
:mod:`fedpilot.deployment`'s.
"""
