"""Flower's SuperLink, as ``fedpilot server`` runs it, with the learners it turns away
before they reach Flower written to its log. Everything else is Flower's own
``flower-superlink``.

A learner that fails the TLS handshake (it trusts another CA, it found the server's
certificate expired, it speaks plain HTTP to a TLS server) never reaches Flower's
Fleet API: the event loop drops the connection and logs nothing, so the server would
never know a learner tried. Likewise a TLS learner at a server without TLS is one
"Invalid HTTP request" on the web server's console only. Both become one line in the
SuperLink's log (the ``flwr`` logger), tagged :data:`HANDSHAKE_TAG` or
:data:`NOT_HTTP_TAG`, which :mod:`fedpilot.fleet.flower.refusals` turns into refusals.

Usage: ``python -m fedpilot.deployment.link_main <flower-superlink args>``
"""

from __future__ import annotations

import logging
import ssl
import sys
from typing import Any

HANDSHAKE_TAG = "[fedpilot:tls-handshake]"
"""Starts the log line of a failed TLS handshake: ``<tag>[SSL:<reason>] <error>``."""
NOT_HTTP_TAG = "[fedpilot:not-http]"
"""Starts the log line of a request that was not HTTP at a server without TLS."""
_UVICORN_NOT_HTTP = "Invalid HTTP request received."
"""What uvicorn (Flower 1.41's web server) logs for bytes it cannot parse as HTTP."""

_log = logging.getLogger("flwr")  # Flower's logger: its console and its --log-file


class HandshakeReporting(ssl.SSLObject):
    """An SSL object that logs why its handshake failed (the event loop does not)."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # the handshake goes on when more bytes arrive
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            raise  # closed before a word was said: a port check, not a learner
        except ssl.SSLError as exc:
            _log.warning("%s[SSL:%s] %s", HANDSHAKE_TAG, exc.reason, exc)
            raise


class NotHttpReporting(logging.Filter):
    """Copies uvicorn's "Invalid HTTP request" warning into Flower's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == _UVICORN_NOT_HTTP:
            _log.warning("%s %s", NOT_HTTP_TAG, _UVICORN_NOT_HTTP)
        return True


def report_turned_away() -> None:
    """Log every failed TLS handshake and non-HTTP request of this process's SuperLink."""
    import uvicorn.config

    make_context = uvicorn.config.create_ssl_context
    if getattr(make_context, "reports_handshakes", False):
        return

    def create_ssl_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = make_context(*args, **kwargs)
        context.sslobject_class = HandshakeReporting
        return context

    create_ssl_context.reports_handshakes = True  # type: ignore[attr-defined]
    uvicorn.config.create_ssl_context = create_ssl_context
    logging.getLogger("uvicorn.error").addFilter(NotHttpReporting())


def main(argv: list[str]) -> None:
    report_turned_away()
    from flwr.superlink.cli import flower_superlink

    sys.argv = ["flower-superlink", *argv]
    flower_superlink()


if __name__ == "__main__":
    main(sys.argv[1:])
