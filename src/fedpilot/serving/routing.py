"""Which loaded version answers a request: the primary, or the canary for its share.

A caller that sends a key (``X-Fedpilot-Key``) is routed by a hash of it, so it stays on
one side as long as the share does, in every server process. Requests without a key are
spread by a counter: exactly the share of them, in a fixed order, with no randomness.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

from fedpilot.serving.loading import ServedModel

_BASIS = 10_000


@dataclass(frozen=True)
class Route:
    """A version and the name it is served under (its alias, or None if pinned)."""

    model: ServedModel
    alias: str | None
    role: str
    """``primary`` or ``canary``."""


@dataclass(frozen=True)
class Routes:
    """Everything a request needs, swapped whole when an alias moves: a request reads it
    once, so it never sees half of a switch."""

    primary: Route
    canary: Route | None = None
    basis_points: int = 0
    """The canary's share in ten-thousandths."""


def key_bucket(key: str) -> int:
    """A caller key's place in [0, 10000): the same on every run and every machine."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BASIS


class Router:
    """Picks a route per request; thread-safe (the counter is one C-level step)."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, routes: Routes, key: str | None) -> Route:
        if routes.canary is None:
            return routes.primary
        share = routes.basis_points
        if key is not None:
            hit = key_bucket(key) < share
        else:
            n = next(self._counter)
            # Request n goes to the canary when the running total of its share crosses an
            # integer: exactly `share` in every 10000 requests, evenly spread.
            hit = ((n + 1) * share) // _BASIS > (n * share) // _BASIS
        return routes.canary if hit else routes.primary
