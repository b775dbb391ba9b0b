"""A learner machine's side of Flower's deployment engine: a SuperNode child process
that serves fedpilot's ClientApp with this machine's data."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedpilot.deployment.refusal import RETRYING, Refusal, refusal_in
from fedpilot.deployment.superlink import (
    Transport,
    die_with_parent,
    flower_env,
    stop_process,
)
from fedpilot.deployment.warm import write_launcher

_READY = re.compile(r"SuperNode ID: (\d+)")
_PORT_TAKEN = "address already in use"
"""The SuperNode's own API port (chosen free a moment before) was taken meanwhile: by
another process, or by a SuperLink starting on this machine that got the same port."""
WARM_TIMEOUT_S = 300.0
"""The longest a learner waits for its zygote's imports before it connects anyway (its
ClientApps then start cold, as Flower's own)."""


@dataclass(frozen=True)
class NodeData:
    """This learner's data: partition ``index`` of ``count``, or its own file or directory."""

    index: int | None = None
    count: int | None = None
    path: Path | None = None

    def node_config(self, name: str | None) -> str:
        items = {"name": name} if name else {}
        if self.path is not None:
            items["data-path"] = str(self.path.resolve())
            return _config_text(items)
        return _config_text(items) + f" partition-id={self.index} num-partitions={self.count}"


def _config_text(items: dict[str, str]) -> str:
    # Flower parses --node-config values as TOML: strings need quotes.
    return " ".join(f'{k}="{v}"' for k, v in items.items())


class SuperNodeProcess:
    """A SuperNode connecting to ``server``, started and watched until it is registered.

    A warm learner connects only once its zygote has imported everything a ClientApp
    needs: the SuperLink counts a registered node as online, and the server hands an
    online node work at once. A node that registered first and warmed up after would
    take its first message cold, on a CPU busy with the zygote's own imports, and on a
    small or loaded machine miss the first round's deadline.

    Args:
        server: host:port of the SuperLink's Fleet API.
        data: which data this learner serves.
        transport: TLS (with the CA that signed the server's certificate) or insecure.
        key: this learner's private key (``fedpilot learners keygen``), when the server
            authenticates learners.
        workdir: Flower's home and the SuperNode's log.
        name: shown in logs and passed to the ClientApp.
        warm: serve messages from a pre-imported zygote (:mod:`.warm`) instead of a
            fresh Python process per message; the SuperNode starts once it listens.
        warm_timeout: the longest to wait for the zygote before connecting anyway.
        poll_interval: the longest the SuperNode waits before asking the server again
            when idle; it starts at 0.1 s after each message (:mod:`.tuning`).
    """

    def __init__(
        self,
        server: str,
        data: NodeData,
        transport: Transport,
        *,
        workdir: Path,
        key: Path | None = None,
        name: str | None = None,
        warm: bool = True,
        warm_timeout: float = WARM_TIMEOUT_S,
        poll_interval: float = 3.0,
    ) -> None:
        self.server = server
        self.data = data
        self.transport = transport
        self.workdir = workdir
        self.key = key
        self.name = name
        self.node_id: int | None = None
        self.log_file = workdir / "supernode.log"
        self.warm = warm
        self.warm_timeout = warm_timeout
        self.poll_interval = poll_interval
        self._process: subprocess.Popen[str] | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._socket: Path | None = None
        self._ready = threading.Event()
        self._refusal: Refusal | None = None
        self._port_taken = threading.Event()
        self._watcher: threading.Thread | None = None
        self.connect_retries = 0
        """Failed connection attempts the SuperNode retries (Flower says no more)."""

    def command(self) -> list[str]:
        reply_wait = 0.05
        cmd = [
            sys.executable,
            "-m",
            "fedpilot.deployment.node_main",
            str(self.poll_interval),
            str(reply_wait),
            "--",
            f"--superlink={self.server}",
            f"--node-config={self.data.node_config(self.name)}",
            "--host=127.0.0.1",  # the ClientApp processes' API: this machine only
            f"--port={free_port()}",
        ]
        if self.transport.insecure:
            cmd.append("--insecure")
        else:
            cmd.append(f"--root-certificates={self.transport.ca_cert}")
        if self.key is not None:
            cmd.append(f"--auth-supernode-private-key={self.key}")
        return cmd

    def start(self, on_line: Callable[[str], None] | None = None) -> None:
        """Start the SuperNode (again, after :meth:`stop`) and watch its log; a warm
        one first starts its zygote (kept across restarts) and waits until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self._refusal = None
        self._port_taken.clear()
        self.connect_retries = 0
        command = self.command()
        env = flower_env(self.workdir)
        if self.warm:
            env["PATH"] = os.pathsep.join([str(self._prepare_launcher()), env["PATH"]])
            self._start_zygote()
            self._await_zygote()
        with self.log_file.open("a") as log:
            log.write(f"$ {shlex.join(command)}\n")
        self._process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=die_with_parent,
        )
        self._watcher = threading.Thread(target=self._watch, args=(on_line,), daemon=True)
        self._watcher.start()

    def _prepare_launcher(self) -> Path:
        """Write the ``flwr-clientapp`` launcher; returns the folder to put on PATH."""
        if self._socket is None:
            self._socket = Path(tempfile.mkdtemp(prefix="fedpilot-")) / "zygote.sock"
        bin_dir = self.workdir / "bin"
        write_launcher(bin_dir, self._socket)
        return bin_dir

    def _start_zygote(self) -> None:
        if self._socket is None or (self._zygote is not None and self._zygote.poll() is None):
            return
        # A stopped zygote's socket file stays; the new one's must be awaited.
        self._socket.unlink(missing_ok=True)
        with (self.workdir / "zygote.log").open("ab") as log:
            self._zygote = subprocess.Popen(
                [sys.executable, "-m", "fedpilot.deployment.warm", str(self._socket)],
                env=flower_env(self.workdir),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def _await_zygote(self) -> None:
        """Wait until the zygote listens (its socket's path appears only then), it
        exits, or :attr:`warm_timeout` passes; the last two are logged, and the
        learner then serves cold rather than not at all."""
        assert self._socket is not None and self._zygote is not None
        deadline = time.monotonic() + self.warm_timeout
        while not self._socket.exists():
            if self._zygote.poll() is not None:
                problem = f"exited with code {self._zygote.returncode}"
                break
            if time.monotonic() >= deadline:
                problem = f"was not ready in {self.warm_timeout:.0f}s"
                break
            time.sleep(0.05)
        else:
            return
        with self.log_file.open("a") as log:
            log.write(
                f"fedpilot: the warm ClientApp process {problem} (see "
                f"{self.workdir / 'zygote.log'}); ClientApps start cold\n"
            )

    def _watch(self, on_line: Callable[[str], None] | None) -> None:
        assert self._process is not None and self._process.stdout is not None
        with self.log_file.open("a") as log:
            for line in self._process.stdout:
                log.write(line)
                log.flush()
                if on_line is not None:
                    on_line(line.rstrip("\n"))
                if not self._ready.is_set() and (match := _READY.search(line)):
                    self.node_id = int(match.group(1))
                    self._ready.set()
                if not self._ready.is_set() and self._refusal is None:
                    self._refusal = refusal_in(line)
                if not self._ready.is_set() and RETRYING in line:
                    self.connect_retries += 1
                if _PORT_TAKEN in line:
                    self._port_taken.set()

    def wait_ready(self, timeout: float) -> bool:
        """True once registered; False if refused, exited or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.02):
                return True
            if self._refusal is not None:
                return False
            if self.returncode is not None:
                # Its last lines may say why it exited: read them before answering.
                if self._watcher is not None:
                    self._watcher.join(5.0)
                return self._ready.is_set()
        return False

    @property
    def refusal(self) -> Refusal | None:
        """Why the server turned this SuperNode away, if it did (:mod:`.refusal`)."""
        return self._refusal

    @property
    def port_taken(self) -> bool:
        """The SuperNode could not bind its API port: start it again (on another one)."""
        return self._port_taken.is_set()

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def wait(self) -> int:
        assert self._process is not None
        return self._process.wait()

    def stop(self, timeout: float = 10.0, *, keep_warm: bool = False) -> None:
        """Stop the SuperNode and, unless ``keep_warm`` (it is about to start again),
        its zygote."""
        stop_process(self._process, timeout)
        self._process = None
        if not keep_warm:
            stop_process(self._zygote, timeout)
            self._zygote = None


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
