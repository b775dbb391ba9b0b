"""`fedpilot learner`: serve this machine's data to a federation's server."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from fedpilot.errors import UserError

if TYPE_CHECKING:
    from fedpilot.deployment.refusal import Refusal
    from fedpilot.deployment.supernode import NodeData, SuperNodeProcess

READY_TIMEOUT_S = 120.0
RECHECK_INTERVAL_S = 2.0
"""How often a learner that cannot connect checks the transport again (at most)."""
EXIT_REFUSED = 3


def learner_command(
    server: str = typer.Option(..., "--server", help="host:port of the server's SuperLink."),
    partition: str | None = typer.Option(
        None, "--partition", help="I/N: serve partition I of N of the spec's dataset."
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="This machine's data, read by the federation's task: an .npz file holding "
        "x_train, y_train (optionally x_test, y_test), or a directory holding them as "
        "x_train.npy, y_train.npy (optionally x_test.npy, y_test.npy). A user's task may "
        "read a directory of its own layout (e.g. images and label files).",
    ),
    name: str | None = typer.Option(None, "--name", help="Shown in logs."),
    ca: Path | None = typer.Option(
        None, "--ca", help="The CA certificate that signed the server's (ca.crt)."
    ),
    key: Path | None = typer.Option(
        None, "--key", help="This learner's private key (`fedpilot learners keygen`)."
    ),
    insecure: bool = typer.Option(False, "--insecure", help="No TLS (development only)."),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Where the SuperNode keeps its state and log."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Echo the SuperNode's log."),
    poll_interval: float = typer.Option(
        3.0,
        "--poll-interval",
        min=0.1,
        help="The longest wait between asking the server for work when idle (as Flower's "
        "SuperNode: 3 s). After each message it starts at 0.1 s and doubles.",
    ),
    refused_grace: float = typer.Option(
        90.0,
        "--refused-grace",
        help="Seconds to keep retrying while the server does not know this learner's key: "
        "a server registers allowed keys just after it starts, and a learner restarted "
        "after a crash is refused until the server has seen its old session time out "
        "(Flower: two missed 30 s heartbeats). Any other refusal (no key, another CA, TLS "
        "on one side only) ends the learner at once, with exit code 3.",
    ),
) -> None:
    """Join a federation: start a Flower SuperNode serving fedpilot's learner with this
    machine's data, print when it is registered and ready, and serve until stopped."""
    from fedpilot.cli.server import INSECURE_WARNING
    from fedpilot.deployment.superlink import Transport
    from fedpilot.deployment.supernode import SuperNodeProcess
    from fedpilot.spec.runtime import check_address

    console = Console(stderr=True)
    try:
        check_address(server, "--server")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    node_data = _node_data(partition, data)
    if insecure:
        console.print(INSECURE_WARNING)
    elif ca is None:
        raise UserError(
            "TLS is on by default: give --ca CA_CERT (ca.crt from `fedpilot certs init`), "
            "or --insecure"
        )
    for label, path in (("--ca", ca), ("--key", key)):
        if path is not None and not path.is_file():
            raise UserError(f"`{label}` must be a readable file, got {str(path)!r}")
    node = SuperNodeProcess(
        server,
        node_data,
        Transport(insecure=insecure, ca_cert=None if insecure else ca),
        workdir=workdir or Path(tempfile.mkdtemp(prefix="fedpilot-learner-")),
        key=key,
        name=name,
        poll_interval=poll_interval,
    )
    try:
        _register(node, console, verbose=verbose, grace=refused_grace)
        console.print(
            f"learner {name or ''} registered with {server} as node {node.node_id}; "
            f"ready in {process_age():.2f}s (serving {_describe(node_data)})",
            soft_wrap=True,  # one line, whatever the width: scripts read it
        )
        code = node.wait()
    except Refused as refused:
        node.stop()
        console.print(
            f"[red]the server at {server} refused this learner[/]: "
            f"{escape(refused.reason)} (log: {escape(str(node.log_file))})",
            soft_wrap=True,
        )
        code = EXIT_REFUSED
    except KeyboardInterrupt:
        node.stop()
        code = 130
    raise typer.Exit(code)


class Refused(Exception):
    """The server turned this learner away; ``reason`` says why and what to do."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.reason = refusal.reason


def _register(node: SuperNodeProcess, console: Console, *, verbose: bool, grace: float) -> None:
    """Start the SuperNode until it is registered; a refusal that may pass (an allowed
    key the server is still registering) is retried for ``grace`` s, any other ends it."""
    _check_transport(node)
    if node.transport.insecure and node.key is not None:
        raise UserError(
            "`--key` needs TLS: Flower checks learner keys only over TLS. Give --ca "
            "CA_CERT instead of --insecure, or no --key for a server that admits any learner"
        )
    give_up = time.monotonic() + grace
    port_retries = 5
    while True:
        node.start(on_line=console.print if verbose else None)
        if _wait_ready(node):
            return
        exited = node.returncode
        port_taken = node.port_taken
        refusal = node.refusal
        node.stop(keep_warm=refusal is not None or port_taken)
        if port_taken and port_retries > 0:
            port_retries -= 1  # its own API port went to another process: pick another
            continue
        if refusal is None:
            why = (
                f"exited with code {exited}"
                if exited is not None
                else (f"did not register within {READY_TIMEOUT_S:.0f}s")
            )
            raise UserError(f"the learner {why} (server {node.server}); see {node.log_file}")
        if not refusal.transient or time.monotonic() >= give_up:
            raise Refused(refusal)
        console.print("refused; retrying in 3s (the server may still be registering keys)")
        time.sleep(3.0)


def _wait_ready(node: SuperNodeProcess) -> bool:
    """Wait until the SuperNode is registered, turned away, exited or out of time. While
    it fails to connect, check the transport again: a server that was not up at the
    first check may speak TLS to a learner without, which Flower retries forever."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    checked_at = 0
    while (left := deadline - time.monotonic()) > 0:
        if node.wait_ready(min(left, RECHECK_INTERVAL_S)):
            return True
        if node.refusal is not None or node.returncode is not None:
            return False
        if node.connect_retries > checked_at:
            checked_at = node.connect_retries
            _check_transport(node)
    return False


def _check_transport(node: SuperNodeProcess) -> None:
    """Raises :class:`Refused` if the server would turn the learner away at the TLS layer."""
    from fedpilot.deployment.refusal import check_transport

    refusal = check_transport(node.server, node.transport)
    if refusal is not None:
        raise Refused(refusal)


def _node_data(partition: str | None, data: Path | None) -> NodeData:
    from fedpilot.deployment.supernode import NodeData

    if (partition is None) == (data is None):
        raise UserError("give exactly one of --partition I/N and --data PATH")
    if data is not None:
        # Only existence is checked here: the layout is the task's, which comes from
        # the server with the spec; a wrong layout fails the learner's first round.
        if not (data.is_file() or data.is_dir()):
            raise UserError(
                f"`--data` must be an existing .npz file or directory, got {str(data)!r}"
            )
        return NodeData(path=data)
    match = re.fullmatch(r"(\d+)/(\d+)", partition or "")
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise UserError(f"`--partition` must be I/N with 0 <= I < N, got {partition!r}")
    return NodeData(index=int(match.group(1)), count=int(match.group(2)))


def _describe(data: NodeData) -> str:
    return str(data.path) if data.path is not None else f"partition {data.index}/{data.count}"


def process_age() -> float:
    """Seconds since this process started (what a learner's start-to-ready time counts)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # since boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.process_time()
