"""Flower's deployment engine as a fleet: SuperLink on the server, SuperNodes on learners.

Nothing is imported here: a learner machine's tools (:mod:`.supernode`) must stay light,
and Flower loads the ServerApp/ClientApp components (:mod:`.apps`) by name.
"""
