"""Learners the SuperLink turned away, read from its log.

Flower answers a learner it refuses with an API error to the SuperNode and one log
line on the SuperLink; nothing else records it. The ServerApp reads the new lines of
that log each round and turns every refusal into a ``refused`` notice, so the refusal
lands in the run's events. A notice names the learner by what it presented: the
fingerprint of its key, :data:`NO_KEY` for none, :data:`UNKNOWN` when it failed
before presenting any (TLS). Its detail says in words what was wrong.

Lines are recognised by their structured parts, not by the free text around them:

- Flower's ``[ApiError:<code>]`` (its ``ApiErrorCode``, :mod:`fedpilot.deployment.refusal`):
  2001, a learner without a key at a server that admits only allowed keys; 2004, a key
  the server does not know (Flower gives 2004 to a known key whose previous session
  lives on too: only its text tells the two apart);
- fedpilot's own lines for learners that never reach Flower (:mod:`.link_main
  <fedpilot.deployment.link_main>`): a failed TLS handshake with OpenSSL's reason,
  and a request that is not HTTP at a server without TLS.
"""

from __future__ import annotations

import re
from collections.abc import Set
from pathlib import Path

from fedpilot.deployment.link_main import HANDSHAKE_TAG, NOT_HTTP_TAG
from fedpilot.deployment.refusal import NO_KEY as NO_KEY_ERROR
from fedpilot.deployment.refusal import UNKNOWN_KEY as UNKNOWN_KEY_ERROR
from fedpilot.deployment.tail import LineFollower
from fedpilot.errors import UserError
from fedpilot.types import FleetNotice

NO_KEY = "none"
"""The learner of a refusal for having no key (Flower made it a throw-away one)."""
UNKNOWN = "unknown"
"""The learner of a refusal at the TLS layer: it had not presented a key yet."""

# [/v1/fleet/activate-node][ApiError:2004] Attempted to register SuperNode with public
# key: b'-----BEGIN PUBLIC KEY-----\n...', exception: No SuperNode found with the ...
# [/v1/fleet/register-node][ApiError:2001] Attempted to register SuperNode with public
# key: b'-----BEGIN PUBLIC KEY-----\n...'
_API_ERROR = re.compile(r"\[ApiError:(\d+)\] [^']*(b'[^']*')(?:, exception: (.*))?$")
# [fedpilot:tls-handshake][SSL:TLSV1_ALERT_UNKNOWN_CA] [SSL: ...] tlsv1 alert unknown ca
_HANDSHAKE = re.compile(re.escape(HANDSHAKE_TAG) + r"\[SSL:(\w+)\] (?:\[SSL: \w+\] )?(.*)$")
_OPENSSL_SUFFIX = re.compile(r" \(_ssl\.c:\d+\)$")

_ALLOW_LIST = "runtime.authorized_learners"
_NO_TLS = (
    "it came without TLS (started with --insecure?), and this server requires TLS: "
    "start it with --ca and this server's ca.crt"
)
_HANDSHAKES = {
    "HTTP_REQUEST": _NO_TLS,
    "TLSV1_ALERT_UNKNOWN_CA": (
        "it does not trust this server's certificate (it was given another CA): "
        "start it with --ca and this server's ca.crt"
    ),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": (
        "it found this server's certificate expired (or its clock is wrong): "
        "make new certificates with `fedpilot certs init`"
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        "it rejected this server's certificate (does the certificate name the address "
        "it dials? `fedpilot certs init --host`)"
    ),
}


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
        """Refusals logged since the last call, each distinct one once (a learner
        retrying is refused again and again for the same reason)."""
        notices = (parse_refusal(line) for line in self._lines.new_lines())
        kept = [n for n in notices if n is not None and n.learner not in self._allowed]
        return list(dict.fromkeys(kept))


def parse_refusal(line: str) -> FleetNotice | None:
    """A ``refused`` notice for a SuperLink log line that records a refused learner."""
    line = line.rstrip()
    if match := _API_ERROR.search(line):
        return _api_refusal(int(match.group(1)), match.group(2), match.group(3) or "")
    if match := _HANDSHAKE.search(line):
        reason, text = match.group(1), _OPENSSL_SUFFIX.sub("", match.group(2))
        detail = _HANDSHAKES.get(reason, f"its TLS handshake failed ({text})")
        return FleetNotice("refused", UNKNOWN, detail=f"{detail} [TLS: {text}]")
    if NOT_HTTP_TAG in line:
        return FleetNotice(
            "refused",
            UNKNOWN,
            detail="it sent something that is not plain HTTP (TLS? it was started with "
            "--ca), and this server runs without TLS (--insecure): start the learner with "
            "--insecure, or the server with TLS (runtime.certificates)",
        )
    return None


def _api_refusal(code: int, key: str, exception: str) -> FleetNotice | None:
    from fedpilot.security.keys import public_key_fingerprint

    if code == NO_KEY_ERROR:
        return FleetNotice(
            "refused",
            NO_KEY,
            detail=f"it has no key, and this server admits only learners on its allow-list "
            f"({_ALLOW_LIST}): start it with --key [Flower API error {code}]",
        )
    # A known key whose previous session has not timed out yet ("could not be
    # activated") is a learner coming back, not a refusal.
    if code != UNKNOWN_KEY_ERROR or "No SuperNode found" not in exception:
        return None
    try:
        fingerprint = public_key_fingerprint(key)
    except UserError:
        fingerprint = "unknown-key"
    return FleetNotice(
        "refused",
        fingerprint,
        detail=f"its key is not on this server's allow-list ({_ALLOW_LIST}; a server "
        f"without one admits only learners without --key) [{exception.strip()}]",
    )
