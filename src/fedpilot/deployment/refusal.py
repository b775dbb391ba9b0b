"""Why a server turned a learner away, as the learner's SuperNode reports it.

Flower 1.41's SuperNode ends a failed registration with ``Exit Code: 305`` and one
line that carries a structured part: the Fleet API's error code (``[code: 2001]``),
or OpenSSL's reason (``[SSL: CERTIFICATE_VERIFY_FAILED]``) when the TLS handshake
failed. :func:`refusal_in` reads those parts, never the free text around them, and
says in the learner's terms what is wrong and what to do. One mismatch Flower never
reports: a SuperNode without TLS at a TLS server only retries, so the learner asks
the server itself (:func:`check_transport`), as it does before its SuperNode starts.

The server's side of the same refusals is :mod:`fedpilot.fleet.flower.refusals`.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedpilot.errors import UserError

if TYPE_CHECKING:
    from fedpilot.deployment.superlink import Transport

NO_KEY = 2001
"""``ApiErrorCode.FLEET_SUPERNODE_REGISTRATION_DISABLED``: a SuperNode without a key
(Flower then makes one up and asks to register it) at a SuperLink that admits only
registered keys."""
UNKNOWN_KEY = 2004
"""``ApiErrorCode.FLEET_NODE_ACTIVATION_FAILED``: a key the SuperLink does not know, or
a known one whose previous session has not timed out yet."""
RETRYING = "Connection attempt failed"
"""The SuperNode's line for a failed connection it retries, whatever the cause."""

_API_ERROR = re.compile(r"\[code: (\d+)\]")
_SSL_ERROR = re.compile(r"\[SSL: (\w+)\] (.*?)(?: \(_ssl\.c:\d+\))?$")
_VERIFY_DETAIL = re.compile(r"certificate verify failed: (.*)")


@dataclass(frozen=True)
class Refusal:
    """Why the server turned this learner away: ``reason`` ends "…: do this".

    ``transient``: a retry may be let in (the server registers allowed keys just after
    it starts, and refuses a restarted learner until its old session has expired).
    """

    reason: str
    transient: bool = False


def refusal_in(line: str) -> Refusal | None:
    """The refusal a SuperNode's output ``line`` reports, if it reports one."""
    line = line.rstrip()
    if match := _API_ERROR.search(line):
        code = int(match.group(1))
        if code == UNKNOWN_KEY:
            return Refusal(
                "its key is not on the server's allow-list (runtime.authorized_learners): "
                "ask the server's operator to add this learner's .pub (a server without "
                "an allow-list admits only learners without --key)",
                transient=True,
            )
        if code == NO_KEY:
            return Refusal(
                "the server admits only learners whose key is on its allow-list, and this "
                "learner has no key: give --key (`fedpilot learners keygen` makes one; the "
                "server's operator adds its .pub to runtime.authorized_learners)"
            )
        return Refusal(f"the server answered with Flower API error {code}: {line}")
    if match := _SSL_ERROR.search(line):
        return _tls_refusal(match.group(1), match.group(2))
    return None


def _tls_refusal(reason: str, text: str) -> Refusal:
    if reason != "CERTIFICATE_VERIFY_FAILED":
        # Not a certificate problem: the server did not answer TLS at all (OpenSSL:
        # WRONG_VERSION_NUMBER, or a record layer failure on newer versions).
        return Refusal(
            f"the server does not speak TLS (it runs with --insecure?) and this learner "
            f"does (--ca) [{reason}: {text}]: start the learner with --insecure instead "
            "of --ca, or the server with TLS (runtime.certificates)"
        )
    detail = match.group(1) if (match := _VERIFY_DETAIL.search(text)) else text
    if "expired" in detail:
        advice = (
            "the server's certificate has expired (or this machine's clock is wrong): "
            "its operator makes new ones with `fedpilot certs init`"
        )
    elif "mismatch" in detail.lower():
        advice = (
            "the server's certificate does not name the address this learner dials: "
            "use --server with a name it has (`fedpilot certs init --host`)"
        )
    else:
        advice = (
            "the server's certificate is not signed by the CA given as --ca: give the "
            "ca.crt that `fedpilot certs init` wrote with the server's certificate"
        )
    return Refusal(f"{advice} [certificate verify failed: {detail}]")


INSECURE_AT_TLS = Refusal(
    "the server speaks TLS, and this learner was started with --insecure: start it with "
    "--ca CA_CERT (the server's ca.crt) instead"
)


def check_transport(server: str, transport: Transport, timeout: float = 5.0) -> Refusal | None:
    """Greet the server at host:port as the learner's SuperNode will, and say why it
    would be turned away at the TLS layer; None if it would not, or cannot be reached.

    Done before the SuperNode starts (and warms up for seconds), so a learner with the
    wrong CA, or without TLS at a TLS server, hears why at once. The server records the
    greeting as the SuperNode's own (:mod:`.link_main`): a TLS one with this learner's
    CA, or a plain HTTP request. Flower's SuperNode without TLS at a TLS server would
    never say what is wrong: it retries.
    """
    host, _, port = server.rpartition(":")
    target = (host.strip("[]"), int(port))
    context = None if transport.insecure else _verifying(transport)
    try:
        if context is None:
            return INSECURE_AT_TLS if _speaks_tls(target, timeout) else None
        with (
            socket.create_connection(target, timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=target[0]),
        ):
            return None
    except ssl.SSLError as exc:
        return refusal_in(str(exc))
    except OSError:
        return None  # not listening (yet): the SuperNode retries until it is


def _verifying(transport: Transport) -> ssl.SSLContext:
    """A client context that trusts the learner's ``--ca``, as its SuperNode's does."""
    try:
        return ssl.create_default_context(cafile=transport.ca_cert)
    except (ssl.SSLError, ValueError) as exc:
        raise UserError(
            f"`--ca` must be the server's CA certificate (ca.crt, PEM), got "
            f"{str(transport.ca_cert)!r}: {exc}"
        ) from None


def _speaks_tls(target: tuple[str, int], timeout: float) -> bool:
    """Whether a plain HTTP request (what a SuperNode without TLS sends) gets no HTTP
    answer and a TLS handshake (checking no certificate: only the protocol matters)
    succeeds."""
    with socket.create_connection(target, timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: " + target[0].encode() + b"\r\n\r\n")
        try:
            head = sock.recv(5)
        except ConnectionResetError:
            head = b""  # what a TLS server may do to plain HTTP
    if head.startswith(b"HTTP/"):
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(target, timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=target[0]),
        ):
            return True
    except ssl.SSLError:
        return False
