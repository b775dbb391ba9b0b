"""Warm ClientApp processes for a learner machine.

Flower's SuperNode starts a new ``flwr-clientapp`` process for every message. For a
fedpilot learner that means importing Python, Flower, torch and scikit-learn again each
round: seconds of CPU per message, longer than the training of a small model. The
SuperNode finds ``flwr-clientapp`` on its PATH, so ``fedpilot learner`` puts a launcher
of that name first on it. The launcher (stdlib only, starts in milliseconds) hands its
arguments, environment and standard streams to a *zygote*: a process that imported all
of that once and forks a child per message. The child runs Flower's own
``flwr-clientapp`` entry point unchanged; only the process start is saved. Without a
zygote the launcher runs the real ``flwr-clientapp``, so the learner still works.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path

LAUNCHER_NAME = "flwr-clientapp"
_HEADER = struct.Struct("!I")

# The launcher: runs with `python -S` (no site-packages, ~10 ms to start). It sends
# argv/env/cwd and its stdin/stdout/stderr to the zygote, relays SIGTERM/SIGINT to the
# forked child and exits with the child's code.
_LAUNCHER = """\
#!{python} -S
import json, os, signal, socket, struct, sys
SOCKET, FALLBACK = {socket!r}, {fallback!r}
try:
    conn = socket.socket(socket.AF_UNIX)
    conn.connect(SOCKET)
except OSError:
    os.execv(FALLBACK, [FALLBACK, *sys.argv[1:]])
payload = json.dumps({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}})
data = payload.encode()
socket.send_fds(conn, [struct.pack("!I", len(data)) + data], [0, 1, 2])
reader = conn.makefile("r")
child = int(reader.readline())
def relay(signum, frame):
    try:
        os.kill(child, signum)
    except OSError:
        pass
signal.signal(signal.SIGTERM, relay)
signal.signal(signal.SIGINT, relay)
line = reader.readline()
sys.exit(int(line) if line.strip() else 1)
"""


def write_launcher(bin_dir: Path, socket_path: Path) -> Path:
    """Write the ``flwr-clientapp`` launcher into ``bin_dir`` (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fallback = Path(sys.executable).parent / LAUNCHER_NAME
    launcher = bin_dir / LAUNCHER_NAME
    launcher.write_text(
        _LAUNCHER.format(python=sys.executable, socket=str(socket_path), fallback=str(fallback))
    )
    launcher.chmod(0o755)
    return launcher


def preload() -> None:
    """Import what every ClientApp process of a fedpilot learner needs."""
    import flwr.supernode.cli.flwr_clientapp  # noqa: F401

    import fedpilot.fleet.flower.apps
    import fedpilot.learner.app  # noqa: F401


def serve(socket_path: Path) -> None:
    """The zygote: accept launches on ``socket_path`` and fork a ClientApp for each."""
    preload()
    listener = socket.socket(socket.AF_UNIX)
    # Listen under a temporary name, then rename: the socket's path appears only once it
    # accepts launches, so whoever waits for the path (:class:`SuperNodeProcess`) knows
    # this learner is warm.
    pending = socket_path.with_name(socket_path.name + ".pending")
    for path in (pending, socket_path):
        path.unlink(missing_ok=True)
    listener.bind(str(pending))
    listener.listen(64)
    pending.rename(socket_path)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    signal.signal(signal.SIGTERM, lambda *_: _stop(children))
    while True:
        for _ in selector.select(timeout=0.05):
            conn, _ = listener.accept()
            try:
                pid = _launch(conn, listener)
            except (OSError, ValueError) as exc:
                print(f"fedpilot zygote: launch failed: {exc}", file=sys.stderr)
                conn.close()
                continue
            children[pid] = conn
        _reap(children)


def _stop(children: dict[int, socket.socket]) -> None:
    """Stop the ClientApps still running, then the zygote: a stopped learner must not
    leave one training (or stuck) behind."""
    for pid in children:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    sys.exit(0)


def _launch(conn: socket.socket, listener: socket.socket) -> int:
    header, fds = _recv_fds(conn, _HEADER.size)
    (size,) = _HEADER.unpack(header[: _HEADER.size])
    body = header[_HEADER.size :]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("launcher hung up")
        body += chunk
    request = json.loads(body)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        listener.close()
        _run_child(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"{pid}\n".encode())
    return pid


def _run_child(request: dict[str, object], fds: list[int]) -> None:  # pragma: no cover
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update(dict(request["env"]))  # type: ignore[call-overload]
        sys.argv = list(request["argv"])  # type: ignore[call-overload]
        from flwr.supernode.cli import flwr_clientapp

        flwr_clientapp()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _recv_fds(conn: socket.socket, minimum: int) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(65536, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if len(data) < minimum:
        raise ValueError("short launch request")
    return data, list(fds)


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        with contextlib.suppress(OSError):
            conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        conn.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
