"""Every way Flower 1.41 turns a learner away, as both ends log it: the SuperLink's log
lines become ``refused`` notices (the server's events), the SuperNode's output becomes
the learner's message. The lines are the ones Flower 1.41 and fedpilot's SuperLink
wrapper wrote when each case was run for real (tests/fleet/flower/test_refused_learners.py
runs them again end to end)."""

from __future__ import annotations

import inspect
import logging
import ssl
from pathlib import Path

import pytest

from fedpilot.deployment import link_main
from fedpilot.deployment.link_main import HandshakeReporting
from fedpilot.deployment.refusal import NO_KEY, UNKNOWN_KEY, refusal_in
from fedpilot.fleet.flower import refusals
from fedpilot.fleet.flower.refusals import RefusalLog, parse_refusal
from fedpilot.security.certs import init_certificates
from fedpilot.security.keys import public_key_fingerprint

_KEY = (
    "b'-----BEGIN PUBLIC KEY-----\\n"
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEx/JXY7g+dJC6PYpU9/ihpsdFNbYRU5yt"
    "\\nEZlZtFzxnJ/lUfZYN3Csyy0BDbXIe8WsNn/1AQjElwN136p6IEBbXREiBVtgEjqT\\nbQ5LlHSABtPwNaJd/AP/"
    "R6JpdO7FruUj\\n-----END PUBLIC KEY-----\\n'"
)
_AT = "flwr 2026-12-02 20:38:09,569 | "
# The SuperLink's log (its --log-file), one line per case.
NO_KEY_LINE = (
    f"ERROR {_AT}http.py:76 | [/v1/fleet/register-node][ApiError:2001] Attempted to "
    f"register SuperNode with public key: {_KEY}"
)
UNKNOWN_KEY_LINE = (
    f"ERROR {_AT}http.py:76 | [/v1/fleet/activate-node][ApiError:2004] Attempted to "
    f"register SuperNode with public key: {_KEY}, exception: No SuperNode found with the "
    "given public key."
)
_TLS = f"WARNING {_AT}link_main.py:42 | [fedpilot:tls-handshake]"
WRONG_CA_LINE = (
    f"{_TLS}[SSL:TLSV1_ALERT_UNKNOWN_CA] [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown "
    "ca (_ssl.c:1006)"
)
EXPIRED_LINE = (
    f"{_TLS}[SSL:SSLV3_ALERT_CERTIFICATE_EXPIRED] [SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] "
    "sslv3 alert certificate expired (_ssl.c:1006)"
)
WRONG_NAME_LINE = (
    f"{_TLS}[SSL:SSLV3_ALERT_BAD_CERTIFICATE] [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 "
    "alert bad certificate (_ssl.c:1006)"
)
NO_TLS_LINE = f"{_TLS}[SSL:HTTP_REQUEST] [SSL: HTTP_REQUEST] http request (_ssl.c:1006)"
NOT_HTTP_LINE = f"WARNING {_AT}link_main.py:51 | [fedpilot:not-http] Invalid HTTP request received."

# The learner's SuperNode output, the line after "Exit Code: 305".
NODE_NO_KEY = (
    "[code: 2001] SuperNode authentication is enabled. All SuperNodes must be registered "
    "via the CLI."
)
NODE_UNKNOWN_KEY = "[code: 2004] Failed to activate SuperNode."
NODE_WRONG_CA = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local "
    "issuer certificate (_ssl.c:1006)"
)
NODE_EXPIRED = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired "
    "(_ssl.c:1006)"
)
NODE_WRONG_NAME = (
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch, "
    "certificate is not valid for '192.0.2.2'. (_ssl.c:1006)"
)
NODE_PLAIN_SERVER = "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"


@pytest.mark.parametrize(
    ("line", "learner", "says"),
    [
        (NO_KEY_LINE, refusals.NO_KEY, "it has no key"),
        (WRONG_CA_LINE, refusals.UNKNOWN, "does not trust this server's certificate"),
        (EXPIRED_LINE, refusals.UNKNOWN, "certificate expired"),
        (WRONG_NAME_LINE, refusals.UNKNOWN, "does the certificate name the address"),
        (NO_TLS_LINE, refusals.UNKNOWN, "came without TLS"),
        (NOT_HTTP_LINE, refusals.UNKNOWN, "this server runs without TLS"),
    ],
    ids=["no-key", "wrong-ca", "expired", "wrong-name", "insecure-learner", "tls-at-insecure"],
)
def test_each_way_the_superlink_turns_a_learner_away_is_a_refusal(
    line: str, learner: str, says: str
) -> None:
    notice = parse_refusal(line)
    assert notice is not None and notice.kind == "refused"
    assert notice.learner == learner
    assert says in notice.detail


def test_an_unknown_key_is_named_by_its_fingerprint_and_the_allow_list() -> None:
    notice = parse_refusal(UNKNOWN_KEY_LINE)
    assert notice is not None and notice.learner == public_key_fingerprint(_KEY)
    assert "not on this server's allow-list (runtime.authorized_learners" in notice.detail


def test_lines_that_are_not_refusals() -> None:
    for line in (
        f"WARNING {_AT}flower_superlink.py:402 | SuperNode authentication is disabled.",
        # Other Fleet API errors of a registered learner: not a registration refusal.
        f"ERROR {_AT}http.py:76 | [/v1/fleet/send-node-heartbeat][ApiError:2003] bad",
        UNKNOWN_KEY_LINE.replace(
            "No SuperNode found with the given public key.",
            "SuperNode with node ID 42 could not be activated.",
        ),
    ):
        assert parse_refusal(line) is None


def test_a_learner_refused_again_and_again_is_one_notice_per_read(tmp_path: Path) -> None:
    log = tmp_path / "superlink.log"
    log.write_text("\n".join([NO_TLS_LINE, NO_TLS_LINE, NO_KEY_LINE, NO_TLS_LINE, ""]))
    read = RefusalLog(log)
    assert [n.learner for n in read()] == [refusals.UNKNOWN, refusals.NO_KEY]
    with log.open("a") as out:
        out.write(NO_TLS_LINE + "\n")
    assert [n.learner for n in read()] == [refusals.UNKNOWN]  # refused again later: again


@pytest.mark.parametrize(
    ("line", "transient", "says"),
    [
        (NODE_NO_KEY, False, "this learner has no key: give --key"),
        (NODE_UNKNOWN_KEY, True, "its key is not on the server's allow-list"),
        (NODE_WRONG_CA, False, "not signed by the CA given as --ca"),
        (NODE_EXPIRED, False, "the server's certificate has expired"),
        (NODE_WRONG_NAME, False, "does not name the address this learner dials"),
        (NODE_PLAIN_SERVER, False, "the server does not speak TLS"),
    ],
    ids=["no-key", "unknown-key", "wrong-ca", "expired", "wrong-name", "tls-at-insecure"],
)
def test_each_refusal_the_supernode_reports_says_what_to_do(
    line: str, transient: bool, says: str
) -> None:
    refusal = refusal_in(line)
    assert refusal is not None
    assert refusal.transient is transient
    assert says in refusal.reason


def test_supernode_lines_that_are_not_refusals() -> None:
    for line in (
        "\x1b[91mERROR \x1b[0m:     Exit Code: 305",
        "Failed to initialize the connection to the SuperLink.",
        "\x1b[92mINFO \x1b[0m:      SuperNode ID: 2793564057026467228",
        "\x1b[93mWARNING \x1b[0m:   Connection attempt failed, retrying in 0.44 seconds",
    ):
        assert refusal_in(line) is None


def test_flower_still_reports_refusals_the_way_they_are_read() -> None:
    """The codes and formats above are Flower 1.41's (and uvicorn's): an upgrade that
    changes them fails here, not silently in a deployment."""
    import uvicorn.config
    import uvicorn.protocols.http.httptools_impl as httptools_impl
    from flwr.supercore.error import ApiErrorCode, http
    from flwr.supernode import fleet_http_connection

    assert ApiErrorCode.FLEET_SUPERNODE_REGISTRATION_DISABLED == NO_KEY
    assert ApiErrorCode.FLEET_NODE_ACTIVATION_FAILED == UNKNOWN_KEY
    assert "[ApiError:{err.code}]" in inspect.getsource(http.http_error_translator)
    assert "[code: {flower_error.code}]" in inspect.getsource(fleet_http_connection)
    assert "Invalid HTTP request received." in inspect.getsource(httptools_impl)
    assert callable(uvicorn.config.create_ssl_context)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """A TLS handshake between two in-memory ends, each end's bytes handed to the
    other, until both are done or both have given up."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    ends = [
        (client.wrap_bio(c_in, c_out, server_hostname="localhost"), c_out, s_in),
        (server.wrap_bio(s_in, s_out, server_side=True), s_out, c_in),
    ]
    open_ends = {0, 1}
    for _ in range(10):
        for i in sorted(open_ends):
            end, outgoing, peer = ends[i]
            try:
                end.do_handshake()
                open_ends.discard(i)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                open_ends.discard(i)
            peer.write(outgoing.read())  # a failing end still sends its alert
        if not open_ends:
            return


def test_the_superlink_wrapper_logs_a_failed_handshake_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server_certs = init_certificates(tmp_path / "server", ["localhost"])
    other = init_certificates(tmp_path / "other", ["localhost"])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(server_certs.server_cert, server_certs.server_key)
    server.sslobject_class = HandshakeReporting
    client = ssl.create_default_context(cafile=other.ca_cert)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        _handshake(server, client)
    [line] = [r.getMessage() for r in caplog.records if link_main.HANDSHAKE_TAG in r.getMessage()]
    notice = parse_refusal(line)
    assert notice is not None and "does not trust this server's certificate" in notice.detail

    caplog.clear()
    _handshake(server, ssl.create_default_context(cafile=server_certs.ca_cert))
    assert not caplog.records  # a learner with the right CA: nothing to say
