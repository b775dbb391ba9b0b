"""RayFleet runs learners as Ray tasks, on a real local Ray instance.

The first tests need this process not connected to Ray (one lets a fleet start and stop
its own instance); the others share one instance started here, which fleets find
connected and leave running, so its worker processes stay warm from test to test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import federations
from fedpilot.errors import SpecError, UserError
from fedpilot.fleet import LocalFleet
from fedpilot.fleet.ray import RayFleet
from fedpilot.launch import load_run_spec, run_federation
from fedpilot.orchestrator import load_checkpoint
from fedpilot.spec import FederationSpec
from fedpilot.types import Instruction, Reply

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

# Smaller than the shared federation: every learner every round, evaluated on learners.
RAY_FEDERATION: dict[str, Any] = {
    "data": {"num_learners": 4},
    "rounds": 3,
    "sampling": {"fraction": 1.0},
    "evaluation": {"federated_every": 1},
}

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
WEIGHTS = [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]


@pytest.fixture(scope="module", autouse=True)
def _stop_ray_at_the_end() -> Iterator[None]:
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def shared_ray() -> str:
    """A Ray instance of this test process (started once), as an address to join."""
    if not ray.is_initialized():
        ray.init(
            address="local",  # not a cluster some `ray start` left on this machine
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="warning",
        )
    address: str = ray.get_runtime_context().gcs_address
    return address


def digits_spec(tmp_path: Path, name: str, **changes: Any) -> FederationSpec:
    return federations.digits_spec(tmp_path, name, **{**RAY_FEDERATION, **changes})


def train_all(
    fleet: RayFleet, round_: int, timeout: float = 60, only: str | None = None
) -> dict[str, Reply]:
    """One round for every learner, or for those in ``only``, sent in that order."""
    instruction = Instruction("train", WEIGHTS, {"server-round": round_})
    ids = [info.id for info in fleet.learners()] if only is None else list(only)
    replies = list(
        fleet.dispatch(dict.fromkeys(ids, instruction), deadline=time.monotonic() + timeout)
    )
    assert sorted(r.learner for r in replies) == sorted(ids), "one reply per instruction"
    return {r.learner: r for r in replies}


def test_setup_errors_say_what_to_fix(make_app_spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if ray.is_initialized():  # only when tests run in another order
        ray.shutdown()
    spec = make_app_spec(runtime={"mode": "ray", "address": "not-an-address"})
    with pytest.raises(UserError, match=r"runtime\.address.*not-an-address"):
        RayFleet(spec)
    assert not ray.is_initialized()
    with pytest.raises(SpecError, match="flower_clientapp"):
        RayFleet(make_app_spec(task__flower_clientapp="testapps:nothing", runtime={"mode": "ray"}))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r"pip install 'fedpilot\[ray\]'"):
        RayFleet(spec)


def test_without_an_address_the_fleet_starts_ray_and_stops_it(make_app_spec: Any) -> None:
    if ray.is_initialized():  # only when tests run in another order
        ray.shutdown()
    with RayFleet(make_app_spec(runtime={"mode": "ray"})):
        assert ray.is_initialized()
    assert not ray.is_initialized(), "the fleet started Ray, so it stops it"


def test_ray_trains_the_same_model_as_a_local_pool(tmp_path: Path, shared_ray: str) -> None:
    on_ray = run_federation(digits_spec(tmp_path, "ray", runtime={"mode": "ray"}))
    in_pool = run_federation(
        digits_spec(tmp_path, "local", runtime={"mode": "local", "workers": 2})
    )
    assert on_ray.status == in_pool.status == "completed"
    # Both deliver out of order, so both fold in float64 and sort: the same bits.
    for got, want in zip(on_ray.weights, in_pool.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    quality = {k: v for k, v in in_pool.final_metrics.items() if "sys." not in k}
    assert quality and quality.items() <= on_ray.final_metrics.items()


def test_failures_become_replies_and_clientapp_state_persists(
    make_app_spec: Any, shared_ray: str
) -> None:
    spec = make_app_spec(
        task__run_config={"raise-partition": 1, "die-partition": 2}, runtime={"mode": "ray"}
    )
    with RayFleet(spec) as fleet, LocalFleet(make_app_spec()) as local:
        assert fleet.learners() == local.learners()
        assert not fleet.replies_in_order
        first = train_all(fleet, 1)
        second = train_all(fleet, 2, only="0134")  # a worker dying costs a fresh one
    assert ray.is_initialized(), "a Ray the fleet found connected is left running"
    assert first["1"].error == "learner raised RuntimeError: boom"
    assert first["2"].error is not None and "died" in first["2"].error
    ok = first["0"]
    assert ok.ok and ok.num_examples == 360 and len(ok.weights) == 2
    assert ok.bytes_sent == ok.bytes_received == 64 * 10 * 4 + 40
    assert ok.duration > 0
    assert all(w.flags.writeable for w in ok.weights), "arrays the server may update in place"
    # Flower's context.state came back with each reply and went out with the next job.
    assert first["0"].metrics["calls"] == 1.0 and second["0"].metrics["calls"] == 2.0
    assert second["4"].metrics["calls"] == 2.0 and second["1"].error


def test_a_learner_past_the_deadline_is_cancelled_and_times_out(
    make_app_spec: Any, shared_ray: str
) -> None:
    spec = make_app_spec(
        task__run_config={"sleep-partition": 0, "sleep-seconds": 120}, runtime={"mode": "ray"}
    )
    with RayFleet(spec) as fleet:
        started = time.monotonic()
        # The sleeper goes last, and the deadline leaves room for a worker that a
        # previous test killed to be replaced (importing torch and Flower) on a slow box.
        replies = train_all(fleet, 1, timeout=10, only="12340")
        assert time.monotonic() - started < 14
        assert replies["0"].error is not None and replies["0"].error.startswith("timeout:")
        assert all(replies[i].ok for i in "1234")
        # The sleeper's worker was killed: both CPUs are free again, long before 120 s.
        freed = time.monotonic() + 10
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < freed:
            time.sleep(0.1)
        assert ray.available_resources().get("CPU", 0) == 2
        # The fleet goes on; one learner, so the surviving worker (warm) takes it.
        assert train_all(fleet, 2, only="1")["1"].ok


def test_scaffold_state_is_kept_checkpointed_and_resumes_exactly(
    tmp_path: Path, shared_ray: str
) -> None:
    changes: dict[str, Any] = {"strategy": {"name": "scaffold"}, "runtime": {"mode": "ray"}}
    whole = run_federation(digits_spec(tmp_path, "whole", **changes))
    cut = digits_spec(tmp_path, "cut", **changes)
    stopped = run_federation(cut, callbacks=[federations.StopAfter(2)])
    assert stopped.status == "interrupted" and stopped.rounds_completed == 2
    (run_dir,) = [p for p in Path(cut.output_dir).iterdir() if p.is_dir()]
    controls = load_checkpoint(run_dir).components["learner_state"]
    assert sorted(controls) == ["0", "1", "2", "3"]
    for own in controls.values():
        assert any(np.abs(a).sum() > 0 for a in own["scaffold/control"])

    resumed = run_federation(load_run_spec(run_dir), resume_dir=run_dir)
    assert resumed.status == "completed"
    for got, want in zip(resumed.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(got, want)

    with RayFleet(cut) as fleet, LocalFleet(cut) as local:
        # The same learners, with the data sizes they declare, as under mode: local.
        assert fleet.learners() == local.learners()
        assert all(info.declared_examples for info in fleet.learners())


JOIN = """
import sys, time
import numpy as np
import ray
from fedpilot.fleet.ray import RayFleet
from fedpilot.spec import validate_spec
from fedpilot.types import Instruction

spec = validate_spec({
    "name": "join",
    "task": {"flower_clientapp": "testapps:app", "initial_weights": "testapps:initial_weights"},
    "data": {"num_learners": 2},
    "tracking": {"enabled": False},
    "runtime": {"mode": "ray", "address": sys.argv[1]},
    "output_dir": sys.argv[2],
    "base_dir": sys.argv[3],
})
weights = [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]
instruction = Instruction("train", weights, {"server-round": 1})
with RayFleet(spec) as fleet:  # one learner: a new driver's tasks need fresh workers
    assert ray.is_initialized()
    (reply,) = fleet.dispatch({"1": instruction}, deadline=time.monotonic() + 60)
    assert reply.ok and reply.num_examples == 898, reply
assert not ray.is_initialized(), "the fleet disconnects what it connected"
print("joined")
"""


def test_joining_a_running_cluster_leaves_it_running(tmp_path: Path, shared_ray: str) -> None:
    apps = Path(__file__).parents[1] / "_apps"
    joined = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(JOIN), shared_ray, str(tmp_path), str(apps)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    assert joined.returncode == 0 and "joined" in joined.stdout, joined.stderr[-3000:]

    # The cluster (this process's instance) still runs tasks after the other driver left.
    @ray.remote
    def ping() -> str:
        return "pong"

    assert ray.get(ping.remote(), timeout=30) == "pong"
