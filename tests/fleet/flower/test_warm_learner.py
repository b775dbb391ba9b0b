"""A learner counts as joined only once it can take work: a warm SuperNode connects to
the SuperLink after its zygote listens, never before (a real SuperLink and SuperNodes)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedpilot.deployment.superlink import Control, SuperLinkProcess, Transport
from fedpilot.deployment.supernode import NodeData, SuperNodeProcess, free_port

pytestmark = pytest.mark.slow
INSECURE = Transport(insecure=True)
GENEROUS_S = 300.0


@pytest.fixture(scope="module")
def superlink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    listen = f"127.0.0.1:{free_port()}"
    link = SuperLinkProcess(
        tmp_path_factory.mktemp("link"), listen, certificates=None, authenticate=False
    )
    link.start()
    yield listen
    link.stop()


def _node(superlink: str, workdir: Path, **options: float) -> SuperNodeProcess:
    return SuperNodeProcess(
        superlink, NodeData(index=0, count=1), INSECURE, workdir=workdir, **options
    )


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def test_a_warm_learner_connects_only_once_its_zygote_listens(
    superlink: str, tmp_path: Path
) -> None:
    control = Control(superlink, INSECURE)
    node = _node(superlink, tmp_path)
    try:
        before = {n.node_id for n in control.nodes()}
        node.start()
        # start() returned: the SuperNode process exists now, and only now. Its zygote,
        # which serves every ClientApp of this learner, already takes launches.
        assert node._socket is not None and _listening(node._socket)
        assert node.wait_ready(GENEROUS_S), node.log_file.read_text()
        assert node.node_id in {n.node_id for n in control.nodes()} - before
        # The SuperNode's command came after the zygote was up, in its log too.
        assert "ClientApps start cold" not in node.log_file.read_text()
    finally:
        node.stop()
        control.close()
    assert not node._socket.exists() or not _listening(node._socket), "the zygote stopped"


def test_a_learner_whose_zygote_is_not_ready_in_time_still_serves_cold(
    superlink: str, tmp_path: Path
) -> None:
    node = _node(superlink, tmp_path, warm_timeout=0.0)
    try:
        node.start()
        assert node.wait_ready(GENEROUS_S), node.log_file.read_text()
        assert "was not ready in 0s" in node.log_file.read_text()
    finally:
        node.stop()


def test_a_learner_whose_api_port_was_taken_meanwhile_registers_on_another(
    superlink: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SuperNode's own API port is chosen free and bound a moment later; another
    process (here: a socket this test holds, in CI once: a SuperLink starting at the
    same time) may take it in between. The learner then starts it again on another."""
    from rich.console import Console

    from fedpilot.cli import learner as learner_cli
    from fedpilot.deployment import supernode

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(supernode, "free_port", lambda: next(ports, None) or free_port())
    node = _node(superlink, tmp_path, warm_timeout=0.0)
    try:
        learner_cli._register(node, Console(file=None, quiet=True), verbose=False, grace=0.0)
        assert node.node_id is not None
        log = node.log_file.read_text()
        assert "address already in use" in log and log.count("$ ") == 2  # started twice
    finally:
        node.stop()
        taken.close()
