"""End-to-end: each way a learner can be turned away at registration, against one real
`fedpilot server` per transport. Every learner is told what is wrong and exits with the
refusal code; the server's events record a ``LearnerRefused`` that says it too.

One server per transport serves all its cases: the refused learners run one after the
other, then one allowed learner lets the run's single round start, which reads the
refusals into the events. (The allowed-but-unknown key of the three-round deployment
test, tests/fleet/flower/test_deployment.py, is among them here too.)
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fedpilot.cli.learner import EXIT_REFUSED
from fedpilot.fleet.flower import refusals
from fedpilot.security.certs import init_certificates
from fedpilot.security.keys import public_key_fingerprint
from flower_deploy import FEDPILOT, Credentials, Deployment, of

pytestmark = pytest.mark.slow

Args = Callable[[Credentials, Path], list[str]]
"""A learner's flags beyond --server/--partition/--workdir: (credentials, other CA)."""


def _rogue(c: Credentials) -> str:
    return public_key_fingerprint(c.rogue_key.with_suffix(".pub").read_text())


@dataclass(frozen=True)
class Case:
    id: str
    server: str
    """"tls" (with learner authentication) or "insecure"."""
    args: Args
    learner_says: str
    refused: Callable[[Credentials], str]
    """The ``learner`` of the server's LearnerRefused event."""
    server_says: str


CASES = [
    Case(
        "no-key",
        "tls",
        lambda c, other: ["--ca", str(c.tls / "ca.crt")],
        "this learner has no key: give --key",
        lambda c: refusals.NO_KEY,
        "it has no key",
    ),
    Case(
        "unknown-key",
        "tls",
        lambda c, other: [
            *("--ca", str(c.tls / "ca.crt"), "--key", str(c.rogue_key)),
            *("--refused-grace", "0"),
        ],
        "its key is not on the server's allow-list",
        _rogue,
        "its key is not on this server's allow-list",
    ),
    Case(
        "wrong-ca",
        "tls",
        lambda c, other: ["--ca", str(other), "--key", str(c.keys / "alpha.key")],
        "the server's certificate is not signed by the CA given as --ca",
        lambda c: refusals.UNKNOWN,
        "it does not trust this server's certificate",
    ),
    Case(
        "insecure",
        "tls",
        lambda c, other: ["--insecure"],
        "the server speaks TLS, and this learner was started with --insecure",
        lambda c: refusals.UNKNOWN,
        "it came without TLS",
    ),
    Case(
        "insecure-with-key",
        "tls",
        lambda c, other: ["--insecure", "--key", str(c.keys / "alpha.key")],
        "the server speaks TLS, and this learner was started with --insecure",
        lambda c: refusals.UNKNOWN,
        "it came without TLS",
    ),
    Case(
        "tls-at-insecure",
        "insecure",
        lambda c, other: ["--ca", str(c.tls / "ca.crt")],
        "the server does not speak TLS",
        lambda c: refusals.UNKNOWN,
        "this server runs without TLS",
    ),
]


@dataclass
class Outcome:
    code: int
    stderr: str


@dataclass
class Refusals:
    outcomes: dict[str, Outcome]
    events: list[dict[str, Any]]


def _learner(deployment: Deployment, name: str, args: list[str]) -> list[str]:
    return [
        *(FEDPILOT, "learner", "--server", deployment.address, "--partition", "0/3"),
        *("--name", name, "--workdir", str(deployment.root / f"node-{name}"), *args),
    ]


def _wait_listening(deployment: Deployment, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert deployment.server is not None and deployment.server.poll() is None, deployment.logs()
        try:
            socket.create_connection(("127.0.0.1", deployment.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not listen in {timeout}s")


def _refusals(root: Path, credentials: Credentials, server: str) -> Iterator[Refusals]:
    deployment = Deployment(root, credentials)
    other_ca = init_certificates(root / "other-ca", ["localhost"]).ca_cert
    # The server waits for its one allowed learner however long the refused ones take.
    overrides: dict[str, Any] = {
        "rounds": 1,
        "runtime.min_learners_to_start": 1,
        "runtime.startup_timeout": 3600,
    }
    if server == "insecure":
        overrides |= {"runtime.insecure": True, "runtime.authorized_learners": None}
    deployment.write_spec(**overrides)
    deployment.start_server()
    try:
        _wait_listening(deployment)
        outcomes = {}
        for case in (c for c in CASES if c.server == server):
            command = _learner(deployment, case.id, case.args(credentials, other_ca))
            # Bounded only against a hang: every refusal is told in seconds.
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            outcomes[case.id] = Outcome(done.returncode, done.stderr)
        # One allowed learner: the run's round reads the refusals into its events.
        allowed = ["--insecure"]
        if server == "tls":
            allowed = ["--ca", str(credentials.tls / "ca.crt")]
            allowed += ["--key", str(credentials.keys / "alpha.key")]
        deployment.learners["alpha"] = subprocess.Popen(
            _learner(deployment, "alpha", allowed),
            stdout=subprocess.DEVNULL,
            stderr=(root / "learner-alpha.log").open("w"),
            text=True,
            start_new_session=True,
        )
        result = deployment.finish()
        assert result["status"] == "completed", result
        yield Refusals(outcomes, deployment.events())
    finally:
        deployment.close()


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, credentials: Credentials
) -> Iterator[Refusals]:
    yield from _refusals(tmp_path_factory.mktemp("tls-server"), credentials, "tls")


@pytest.fixture(scope="module")
def insecure_server(
    tmp_path_factory: pytest.TempPathFactory, credentials: Credentials
) -> Iterator[Refusals]:
    yield from _refusals(tmp_path_factory.mktemp("insecure-server"), credentials, "insecure")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_refused_learner_is_told_why_and_the_server_records_it(
    case: Case, credentials: Credentials, request: pytest.FixtureRequest
) -> None:
    found: Refusals = request.getfixturevalue(f"{case.server}_server")
    outcome = found.outcomes[case.id]
    said = " ".join(outcome.stderr.split())  # the console wraps long lines
    assert outcome.code == EXIT_REFUSED, outcome.stderr
    assert case.learner_says in said and "Traceback" not in said

    refused = of(found.events, "LearnerRefused")
    learner = case.refused(credentials)
    details = [e["detail"] for e in refused if e["learner"] == learner]
    assert any(case.server_says in d for d in details), refused
    # The learners that were turned away never joined.
    assert all(case.id not in e["learner"] for e in of(found.events, "LearnerJoined"))


def test_a_learner_without_tls_is_told_once_a_tls_server_comes_up(
    tmp_path: Path, credentials: Credentials
) -> None:
    """The learner starts first; the server is not up, so nothing can be checked yet,
    and Flower's SuperNode without TLS would retry a TLS server forever. Once it has
    failed to connect and the server listens, the learner finds out why and stops."""
    from rich.console import Console

    from fedpilot.cli import learner as learner_cli
    from fedpilot.deployment.superlink import SuperLinkProcess, Transport
    from fedpilot.deployment.supernode import NodeData, SuperNodeProcess, free_port
    from fedpilot.security.certs import CertificatePaths

    port = free_port()
    link = SuperLinkProcess(
        tmp_path / "link",
        f"127.0.0.1:{port}",
        certificates=CertificatePaths.in_dir(credentials.tls),
        authenticate=False,
    )
    node = SuperNodeProcess(
        f"localhost:{port}",
        NodeData(index=0, count=1),
        Transport(insecure=True),
        workdir=tmp_path / "node",
        warm=False,
    )

    told: list[BaseException] = []

    def register() -> None:
        try:
            learner_cli._register(node, Console(quiet=True), verbose=False, grace=0.0)
        except BaseException as exc:
            told.append(exc)

    # The learner registers in a thread, so that this one starts the SuperLink (a child
    # dies with the thread that started it) once the learner failed to connect.
    learner = threading.Thread(target=register, daemon=True)
    learner.start()
    try:
        deadline = time.monotonic() + 300
        while node.connect_retries == 0 and learner.is_alive():
            assert time.monotonic() < deadline, "the learner never tried to connect"
            time.sleep(0.1)
        link.start()
        learner.join(300)
        [refused] = told
        assert isinstance(refused, learner_cli.Refused), refused
        assert "the server speaks TLS" in refused.reason
        notices = refusals.RefusalLog(link.log_file)()
        assert [n.learner for n in notices] == [refusals.UNKNOWN]
        assert "it came without TLS" in notices[0].detail
    finally:
        node.stop()
        link.stop()
