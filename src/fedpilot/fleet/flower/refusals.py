"""Learners the SuperLink refused, read from its log.

Flower answers an unknown key with an API error to the SuperNode and one log line on
the SuperLink; nothing else records it. The ServerApp reads the new lines of that log
each round and turns every refusal into a ``refused`` notice naming the key's
fingerprint, so the refusal lands in the run's events.
"""

from __future__ import annotations

import re
from collections.abc import Set
from pathlib import Path

from fedpilot.deployment.tail import LineFollower
from fedpilot.errors import UserError
from fedpilot.types import FleetNotice

# [/v1/fleet/activate-node][ApiError:2004] Attempted to register SuperNode with public
# key: b'-----BEGIN PUBLIC KEY-----\n...', exception: No SuperNode found with the ...
_REFUSED = re.compile(
    r"\[ApiError:\d+\] Attempted to register SuperNode with public key: (b'[^']*')"
    r", exception: (.*)$"
)


class RefusalLog:
    """Follows a SuperLink log file from byte ``offset`` (where this server's SuperLink
    began writing: refusals before the ServerApp started count too).

    Keys on the allow-list (their fingerprints in ``allowed``) are not refusals: such a
    learner is turned away only while the server is still registering keys or while
    its previous session has not expired, and it retries until it is let in.
    """

    def __init__(self, path: Path, offset: int = 0, allowed: Set[str] = frozenset()) -> None:
        self._lines = LineFollower(path, offset)
        self._allowed = allowed

    def __call__(self) -> list[FleetNotice]:
        """Refusals logged since the last call."""
        notices = (parse_refusal(line) for line in self._lines.new_lines())
        return [n for n in notices if n is not None and n.learner not in self._allowed]


def parse_refusal(line: str) -> FleetNotice | None:
    """A ``refused`` notice for a SuperLink log line that records a refused key."""
    from fedpilot.security.keys import public_key_fingerprint

    match = _REFUSED.search(line.rstrip())
    # A known key whose previous session has not timed out yet ("could not be
    # activated") is a learner coming back, not a refusal.
    if match is None or "No SuperNode found" not in match.group(2):
        return None
    try:
        fingerprint = public_key_fingerprint(match.group(1))
    except UserError:
        fingerprint = "unknown-key"
    return FleetNotice("refused", fingerprint, detail=match.group(2).strip())
