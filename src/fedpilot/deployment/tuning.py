"""Flower 1.41's fixed waits, shortened where a round waits on them.

Flower's deployment engine is built for fleets of thousands, and several of its waits
are constants tuned for that. In a federation of tens of learners they are most of a
round's time, so fedpilot shortens three of them, each exactly where it is used:

- the SuperNode's 3 s sleep after an empty pull of the SuperLink becomes 0.5 s for
  30 s after each message it served (an active learner: the next round's instruction
  comes within seconds), then backs off, doubling, to a cap (3 s, as Flower's, by
  default), so a learner left idle polls no more often than Flower's. Its 0.5 s sleep
  between checks for its ClientApp's reply (a local check) becomes 0.05 s. Both:
  :class:`ShorterWaits`, learner side;
- the 1 s initial back-off of ``pull_objects`` when a message is visible before all of
  its arrays have arrived, which is the normal case for a reply that has just been sent
  (:func:`quicker_object_pulls`, both sides).

Each replaces a module-level name of a pinned Flower release; a test checks the names
are still there, so an upgrade that moves them fails loudly instead of going slow.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

IDLE_WAIT_S = 3
"""The SuperNode's fixed wait after an empty pull (``time.sleep(3)`` in Flower 1.41)."""
REPLY_WAIT_S = 0.5
"""Its fixed wait between checks for the ClientApp's reply (``time.sleep(0.5)``)."""
PULL_BACKOFF_S = 0.02
"""First retry of an object pull that came too early (Flower: 1 s), doubling to
:data:`PULL_BACKOFF_CAP_S`."""
PULL_BACKOFF_CAP_S = 0.5


ACTIVE_POLL_S = 0.5
"""The SuperNode's wait between empty pulls while it is active."""
ACTIVE_WINDOW_S = 30.0
"""How long after serving a message a SuperNode counts as active."""


class ShorterWaits:
    """The ``time`` module, with the SuperNode loop's two fixed waits replaced.

    Args:
        idle_cap: the longest wait between empty pulls (Flower's: 3 s).
        reply: the wait between checks for the ClientApp's reply.
        sleep: what actually waits.
    """

    def __init__(
        self, idle_cap: float, reply: float, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.idle_cap = idle_cap
        self.reply = reply
        self._sleep = sleep
        self._served_at = -ACTIVE_WINDOW_S
        self._backoff = min(ACTIVE_POLL_S, idle_cap)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if seconds == IDLE_WAIT_S:
            if time.monotonic() - self._served_at < ACTIVE_WINDOW_S:
                seconds = min(ACTIVE_POLL_S, self.idle_cap)
            else:
                seconds = self._backoff
                self._backoff = min(self._backoff * 2, self.idle_cap)
        elif seconds == REPLY_WAIT_S:
            # A message is being served: the learner is active.
            seconds = self.reply
            self._served_at = time.monotonic()
            self._backoff = min(ACTIVE_POLL_S, self.idle_cap)
        self._sleep(seconds)


def shorten_supernode_waits(idle_cap: float, reply: float) -> None:
    """Give Flower's SuperNode loop :class:`ShorterWaits` and quicker object pulls."""
    from flwr.supernode import start_client_internal

    setattr(start_client_internal, "time", ShorterWaits(idle_cap, reply))  # noqa: B010
    quicker_object_pulls(start_client_internal)


def quicker_object_pulls(module: ModuleType) -> None:
    """Make ``module``'s ``pull_objects`` retry early pulls after 20 ms, not 1 s."""
    pull = getattr(module, "pull_objects", None)
    if pull is None or isinstance(pull, functools.partial):
        return
    quicker = functools.partial(
        pull, initial_backoff=PULL_BACKOFF_S, backoff_cap=PULL_BACKOFF_CAP_S
    )
    setattr(module, "pull_objects", quicker)  # noqa: B010
