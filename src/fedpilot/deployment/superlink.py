"""The server machine's side of Flower's deployment engine: a SuperLink child process
and a client of its Control API (submit the run, register learners' keys, watch)."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpilot.errors import UserError
from fedpilot.security.certs import CertificatePaths
from fedpilot.security.keys import AuthorizedLearner, public_key_for_flower

FINISHED = "finished"


@dataclass(frozen=True)
class Transport:
    """How to reach a SuperLink: TLS verified against ``ca_cert``, or plain HTTP."""

    insecure: bool
    ca_cert: Path | None = None

    def __post_init__(self) -> None:
        if not self.insecure and self.ca_cert is None:
            raise UserError("TLS needs the CA certificate (ca.crt from `fedpilot certs init`)")


def local_address(listen: str) -> str:
    """The address this machine reaches a server listening on ``listen`` at."""
    host, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]", "") else listen


class SuperLinkProcess:
    """A SuperLink serving ``listen`` as a child process, its state database, apps and
    log kept in ``workdir``. It dies with this process, even after ``kill -9``.

    Args:
        workdir: where the SQLite state, Flower's home and the log live.
        listen: host:port of the Fleet and Control APIs.
        certificates: the server's TLS files; None with ``insecure``.
        authenticate: refuse learners whose key was not registered.
    """

    def __init__(
        self,
        workdir: Path,
        listen: str,
        *,
        certificates: CertificatePaths | None,
        authenticate: bool,
    ) -> None:
        self.workdir = workdir
        self.listen = listen
        self.log_file = workdir / "superlink.log"
        self._certificates = certificates
        self._authenticate = authenticate
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        host, _, port = self.listen.rpartition(":")
        cmd = [
            sys.executable,
            "-m",
            "fedpilot.deployment.link_main",  # Flower's, logging learners turned away
            f"--host={host.strip('[]')}",
            f"--port={port}",
            f"--database={self.workdir / 'superlink.db'}",
            f"--log-file={self.log_file}",
            # Nothing can be downloaded here: every machine has fedpilot installed.
            "--disable-runtime-dependency-installation",
        ]
        if self._certificates is None:
            cmd.append("--insecure")
        else:
            c = self._certificates
            cmd += [
                f"--ssl-ca-certfile={c.ca_cert}",
                f"--ssl-certfile={c.server_cert}",
                f"--ssl-keyfile={c.server_key}",
            ]
        if self._authenticate:
            cmd.append("--enable-supernode-auth")
        return cmd

    def start(self, timeout: float = 60.0) -> None:
        """Start the SuperLink and wait until its port accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        _check_port_free(self.listen)
        env = flower_env(self.workdir)
        with (self.workdir / "superlink.out").open("ab") as out:
            self._process = subprocess.Popen(
                self.command(),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not _port_open(local_address(self.listen)):
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the SuperLink exited with code {self._process.returncode}; "
                    f"see {self.workdir / 'superlink.out'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the SuperLink did not listen on {self.listen} in {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the SuperLink (and the ServerApp it runs) gracefully, then by force."""
        process, self._process = self._process, None
        stop_process(process, timeout)


def stop_process(process: subprocess.Popen[Any] | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; nothing if it already ended."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def flower_env(workdir: Path, task_poll_s: float = 0.1) -> dict[str, str]:
    """Environment for Flower's processes: its home in ``workdir``, this interpreter's
    tools first on PATH (Flower starts ``flwr-serverapp``/``flwr-clientapp`` by name).

    ``task_poll_s``: how often SuperExec asks for a new app process to start (Flower's
    default: every second). Each message waits on it; each ask is a local request.
    """
    env = dict(os.environ)
    env["FLWR_HOME"] = str(workdir / "flwr-home")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", str(task_poll_s))
    return env


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # PR_SET_PDEATHSIG: the kernel sends SIGTERM when the server process dies, however
    # it dies, so a killed server leaves no SuperLink holding its port.
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _check_port_free(listen: str) -> None:
    if _port_open(local_address(listen)):
        raise UserError(
            f"{listen} is already in use: another SuperLink or server runs there "
            "(set runtime.listen to a free host:port, or --superlink to use that one)"
        )


class Control:
    """fedpilot's client of a SuperLink's Control API."""

    def __init__(self, address: str, transport: Transport) -> None:
        from flwr.supercore.control import ControlHttpClient
        from flwr.supercore.interceptors.http.runtime_version import (
            RuntimeVersionHttpInterceptor,
        )

        root = transport.ca_cert.read_bytes() if transport.ca_cert is not None else None
        self._client = ControlHttpClient.from_server_address(
            server_address=address,
            insecure=transport.insecure,
            root_certificates=None if transport.insecure else root,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="fedpilot")],
        )

    def close(self) -> None:
        self._client.close()

    def start_run(
        self, fab: bytes, fab_hash: str, run_config: Mapping[str, str | bool | int | float]
    ) -> int:
        from flwr.common.serde import fab_to_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest
        from flwr.supercore.fab import Fab

        request = StartRunRequest(
            fab=fab_to_proto(Fab(fab_hash, fab, {})),
            override_config=user_config_to_proto(dict(run_config)),
            federation="",
        )
        response = self._client.StartRun(request)
        if not response.HasField("run_id"):
            raise RuntimeError("the SuperLink did not start the run")
        return int(response.run_id)

    def run_status(self, run_id: int) -> tuple[str, str, str]:
        """The Flower run's (status, sub_status, details): status is pending, starting,
        running or finished; sub_status completed, failed or stopped once finished."""
        from flwr.proto.control_pb2 import ListRunsRequest

        response = self._client.ListRuns(ListRunsRequest(run_id=run_id))
        run = response.run_dict[run_id]
        return run.status.status, run.status.sub_status, run.status.details

    def stop_run(self, run_id: int) -> None:
        from flwr.proto.control_pb2 import StopRunRequest

        self._client.StopRun(StopRunRequest(run_id=run_id))

    def stop_unfinished_runs(self) -> None:
        """Stop every run this SuperLink's state still holds as not finished."""
        from flwr.proto.control_pb2 import ListRunsRequest

        for run_id, run in self._client.ListRuns(ListRunsRequest()).run_dict.items():
            if run.status.status != FINISHED:
                self.stop_run(int(run_id))

    def nodes(self) -> list[Any]:
        """Every node the SuperLink knows (Flower ``NodeInfo``: id, name, status, key)."""
        from flwr.proto.control_pb2 import ListNodesRequest

        return list(self._client.ListNodes(ListNodesRequest()).nodes_info)

    def register(self, learners: list[AuthorizedLearner]) -> dict[str, int]:
        """Register every allowed learner's key (once: a restarted server skips the ones
        its state database already holds); returns name → node id."""
        from flwr.proto.control_pb2 import RegisterNodeRequest

        known = {bytes(n.public_key): n for n in self.nodes()}
        ids: dict[str, int] = {}
        for learner in learners:
            key = public_key_for_flower(learner)
            node = known.get(key)
            if node is None:
                response = self._client.RegisterNode(
                    RegisterNodeRequest(public_key=key, name=learner.name)
                )
                ids[learner.name] = int(response.node_id)
            else:
                ids[learner.name] = int(node.node_id)
        return ids
