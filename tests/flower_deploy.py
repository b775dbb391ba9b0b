"""Real deployments on loopback for tests: `fedpilot server` and `fedpilot learner` as
processes, a SuperLink and SuperNodes under them, TLS and learner authentication on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedpilot.deployment.supernode import free_port
from fedpilot.security.certs import init_certificates
from fedpilot.security.keys import add_to_allow_list, generate_learner_keys, read_public_key_file

FEDPILOT = str(Path(sys.executable).parent / "fedpilot")
LEARNERS = ("alpha", "beta", "gamma")


@dataclass(frozen=True)
class Credentials:
    tls: Path
    keys: Path
    allow_list: Path
    rogue_key: Path


@pytest.fixture(scope="session")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    root = tmp_path_factory.mktemp("credentials")
    init_certificates(root / "tls", ["localhost"])
    allow_list = root / "keys" / "authorized_learners.yaml"
    for name in LEARNERS:
        pair = generate_learner_keys(root / "keys", name)
        add_to_allow_list(allow_list, read_public_key_file(pair.public_key, name))
    rogue = generate_learner_keys(root / "rogue", "rogue")
    return Credentials(root / "tls", root / "keys", allow_list, rogue.private_key)


@dataclass
class Deployment:
    """One server and its learners, all real processes, cleaned up at the end."""

    root: Path
    credentials: Credentials
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[str] | None = None
    learners: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    spec_path: Path | None = None

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def write_spec(self, **overrides: Any) -> Path:
        spec: dict[str, Any] = {
            "name": "deploy-e2e",
            "seed": 7,
            "task": {"name": "digits-mlp"},
            "data": {"num_learners": 3, "partition": {"kind": "iid"}},
            "rounds": 3,
            "sampling": {"fraction": 1.0, "min_learners": 1},
            "local": {"epochs": 1, "batch_size": 32, "lr": 0.1},
            "guard": {"enabled": False},
            "tracking": {"enabled": False},
            "output_dir": str(self.runs),
            "runtime": {
                "mode": "flower",
                "listen": f"127.0.0.1:{self.port}",
                "certificates": str(self.credentials.tls),
                "authorized_learners": str(self.credentials.allow_list),
                "min_learners_to_start": 3,
                # Deadlines no round comes near, however loaded the machine: a learner
                # that dies is noticed by the SuperLink (missed heartbeats), not by these.
                "round_timeout": 300,
                "startup_timeout": 300,
            },
        }
        for key, value in overrides.items():
            target = spec
            *parents, leaf = key.split(".")
            for parent in parents:
                target = target[parent]
            target[leaf] = value
        self.spec_path = self.root / "spec.yaml"
        self.spec_path.write_text(yaml.safe_dump(spec))
        return self.spec_path

    def start_server(self, *extra: str) -> subprocess.Popen[str]:
        assert self.spec_path is not None
        log = (self.root / f"server-{time.monotonic_ns()}.log").open("w")
        self.server = subprocess.Popen(
            [FEDPILOT, "server", str(self.spec_path), "--json", *extra],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=self.root,
            start_new_session=True,
        )
        return self.server

    def start_learner(
        self,
        name: str,
        partition: int,
        key: Path | None = None,
        *extra: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``fedpilot learner`` for ``partition``; ``env``: what its environment
        adds to this process's (a machine's own settings, e.g. its secrets)."""
        key = key or self.credentials.keys / f"{name}.key"
        log = (self.root / f"learner-{name}-{time.monotonic_ns()}.log").open("w")
        self.learners[name] = subprocess.Popen(
            [
                FEDPILOT,
                "learner",
                "--server",
                self.address,
                "--partition",
                f"{partition}/3",
                "--name",
                name,
                "--ca",
                str(self.credentials.tls / "ca.crt"),
                "--key",
                str(key),
                "--workdir",
                str(self.root / f"node-{name}"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env={**os.environ, **(env or {})},
            # Its own process group: killing the learner kills its SuperNode and zygote.
            start_new_session=True,
        )

    def kill_learner(self, name: str) -> None:
        """Kill a learner the hard way: the whole machine's worth of processes, SIGKILL."""
        process = self.learners.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def run_dir(self) -> Path:
        runs = [p for p in self.runs.glob("deploy-e2e-*") if p.is_dir()]
        assert runs, f"no run directory under {self.runs}"
        return max(runs, key=lambda p: p.stat().st_mtime)

    def events(self) -> list[dict[str, Any]]:
        path = self.run_dir() / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 600
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                events = self.events()
            except AssertionError:
                events = []
            if predicate(events):
                return events
            if self.server is not None and self.server.poll() is not None:
                raise AssertionError(f"server exited with {self.server.returncode}")
            time.sleep(0.2)
        raise AssertionError(f"timed out; events so far: {[e.get('event') for e in events]}")

    def finish(self, timeout: float = 240) -> dict[str, Any]:
        assert self.server is not None
        out, _ = self.server.communicate(timeout=timeout)
        assert self.server.returncode == 0, self.logs()
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in self.root.glob("*.log"))

    def close(self) -> None:
        processes = [self.server, *self.learners.values()]
        for process in processes:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    process.terminate()
        for process in processes:
            if process is not None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture
def deployment(tmp_path: Path, credentials: Credentials) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, credentials)
    yield deployment
    deployment.close()


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == kind]


def round_completed(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: any(e.get("round") == n for e in of(events, "RoundCompleted"))
