"""The Fleet contract, run against every Fleet: LocalFleet in-process and with a process
pool, RayFleet, and FlowerFleet over a real SuperLink with real SuperNodes.

The checks and the learner they talk to are in ``tests/_apps/fleet_contract.py``. The
simulated fleets are built here (one per kind, shared by its checks, which run in
order); FlowerFleet exists only inside a ServerApp, so the same checks run there, in a
FAB that carries that file, and each test here reads its check's outcome.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from _apps import fleet_contract
from conftest import APPS_DIR, app_spec
from fedpilot.deployment.superlink import Control, SuperLinkProcess, Transport
from fedpilot.deployment.supernode import NodeData, SuperNodeProcess, free_port
from fedpilot.fleet import Fleet, LocalFleet
from fedpilot.fleet.ray import RayFleet
from fedpilot.spec import FederationSpec

SIMULATED = ("local", "local-pool", "ray")
CASES = [
    (kind, check)
    for kind in (*SIMULATED, "flower")
    for check in fleet_contract.CHECKS
    # In-process learners run on the caller's thread: nothing can interrupt one.
    if not (kind == "local" and check in fleet_contract.NEEDS_INTERRUPTION)
]
FLOWER_WAIT_S = 900.0
"""How long the Flower deployment may take to answer, at most (it takes far less)."""

_FAB_PYPROJECT = """\
[project]
name = "fleet-contract"
version = "1.0.0"
description = "The Fleet contract checks as a ServerApp."
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "fedpilot-tests"

[tool.flwr.app.components]
serverapp = "fleet_contract:server_app"
clientapp = "fleet_contract:client_app"

[tool.flwr.app.config]
contract-out = ""
"""


def _spec(tmp_path: Path, kind: str) -> FederationSpec:
    runtime = {
        "local": {"mode": "local", "workers": 0},
        "local-pool": {"mode": "local", "workers": 2},
        "ray": {"mode": "ray"},
    }[kind]
    return app_spec(
        tmp_path,
        task={
            "flower_clientapp": "fleet_contract:client_app",
            "initial_weights": "fleet_contract:initial_weights",
        },
        data={"num_learners": 3},
        runtime=runtime,
    )


@pytest.fixture(scope="module")
def simulated_outcomes() -> dict[str, dict[str, str]]:
    """Each simulated fleet's outcomes, filled on first use: all its checks run once."""
    return {}


def _simulated(outcomes: dict[str, dict[str, str]], kind: str, tmp: Path) -> dict[str, str]:
    if kind not in outcomes:
        spec = _spec(tmp, kind)
        fleet: Fleet = RayFleet(spec) if kind == "ray" else LocalFleet(spec)
        try:
            outcomes[kind] = fleet_contract.run_checks(fleet, interruptible=kind != "local")
        finally:
            fleet.close()
    return outcomes[kind]


@pytest.fixture(scope="module")
def flower_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run the checks once in a ServerApp over a SuperLink and three SuperNodes."""
    root = tmp_path_factory.mktemp("flower-contract")
    source = root / "fab"
    source.mkdir()
    (source / "pyproject.toml").write_text(_FAB_PYPROJECT)
    shutil.copy(APPS_DIR / "fleet_contract.py", source / "fleet_contract.py")
    fab = build_fab_from_disk(source)
    out = root / "outcomes.json"

    listen = f"127.0.0.1:{free_port()}"
    link = SuperLinkProcess(root / "superlink", listen, certificates=None, authenticate=False)
    transport = Transport(insecure=True)
    nodes = [
        SuperNodeProcess(
            listen, NodeData(index=i, count=3), transport, workdir=root / f"node-{i}", name=f"n{i}"
        )
        for i in range(fleet_contract.LEARNERS_FOR_FLOWER)
    ]
    link.start()
    control = Control(listen, transport)
    try:
        run_id = control.start_run(fab, hashlib.sha256(fab).hexdigest(), {"contract-out": str(out)})
        for node in nodes:
            node.start()
        for node in nodes:
            assert node.wait_ready(FLOWER_WAIT_S), node.log_file.read_text()[-3000:]
        deadline = time.monotonic() + FLOWER_WAIT_S
        while not out.exists():
            status, sub_status, details = control.run_status(run_id)
            if status == "finished" and not out.exists():
                raise AssertionError(f"the ServerApp ended ({sub_status}: {details})")
            assert time.monotonic() < deadline, "the contract ServerApp did not answer"
            time.sleep(0.5)
        outcomes: dict[str, str] = json.loads(out.read_text())
        return outcomes
    finally:
        control.close()
        for node in nodes:
            node.stop()
        link.stop()


@pytest.mark.parametrize(("kind", "check"), CASES)
def test_fleet_contract(
    kind: str,
    check: str,
    request: pytest.FixtureRequest,
    simulated_outcomes: dict[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if kind == "flower":
        outcomes: dict[str, str] = request.getfixturevalue("flower_outcomes")
        assert "deployment" not in outcomes, outcomes["deployment"]
    else:
        outcomes = _simulated(simulated_outcomes, kind, tmp_path_factory.mktemp(kind))
    assert outcomes[check] == "ok", outcomes[check]


def test_every_check_runs_on_every_fleet() -> None:
    """Only the in-process fleet is spared a check, the one it cannot pass by design."""
    missing = {(k, c) for k in (*SIMULATED, "flower") for c in fleet_contract.CHECKS}
    assert missing - set(CASES) == {("local", "a_learner_that_blocks_fails_at_the_deadline")}
