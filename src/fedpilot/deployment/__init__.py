"""Flower's deployment engine on real machines: the SuperLink and server processes on the
server, SuperNodes (with warm ClientApp processes) on learners, the Flower app bundle.

Nothing is imported here: a learner machine's tools (:mod:`.supernode`) must stay light.
The fleet that drives learners through this machinery is :mod:`fedpilot.fleet.flower`.
"""
