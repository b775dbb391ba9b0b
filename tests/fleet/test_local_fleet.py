"""LocalFleet runs real Flower ClientApps in-process or in worker processes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from fedpilot.fleet import LocalFleet
from fedpilot.types import Instruction, Reply

WEIGHTS = [np.zeros((64, 10), np.float32), np.zeros(10, np.float32)]


def train_all(fleet: LocalFleet, round_: int = 1, timeout: float = 60) -> dict[str, Reply]:
    instruction = Instruction("train", WEIGHTS, {"server-round": round_})
    learners = {info.id: instruction for info in fleet.learners()}
    replies = list(fleet.dispatch(learners, deadline=time.monotonic() + timeout))
    assert len(replies) == len(learners), "one reply per instruction"
    return {r.learner: r for r in replies}


@pytest.mark.parametrize("workers", [0, 2])
def test_failures_become_replies_and_state_persists(make_app_spec: Any, workers: int) -> None:
    spec = make_app_spec(
        task__run_config={"raise-partition": 1}, runtime={"mode": "local", "workers": workers}
    )
    with LocalFleet(spec) as fleet:
        assert [i.id for i in fleet.learners()] == ["0", "1", "2", "3", "4"]
        first = train_all(fleet, 1)
        second = train_all(fleet, 2)
    assert first["1"].error is not None and "RuntimeError: boom" in first["1"].error
    ok = first["0"]
    assert ok.ok and ok.num_examples == 360 and len(ok.weights) == 2
    assert ok.bytes_sent == ok.bytes_received == 64 * 10 * 4 + 40
    assert ok.duration > 0
    # Flower's context.state survives between rounds, as on a real SuperNode.
    assert first["0"].metrics["calls"] == 1.0 and second["0"].metrics["calls"] == 2.0


def test_pool_kills_a_learner_past_the_deadline(make_app_spec: Any) -> None:
    spec = make_app_spec(
        task__run_config={"sleep-partition": 0, "sleep-seconds": 120},
        runtime={"mode": "local", "workers": 2},
    )
    with LocalFleet(spec) as fleet:
        started = time.monotonic()
        replies = train_all(fleet, timeout=4)
        assert time.monotonic() - started < 60
        assert replies["0"].error is not None and "timeout" in replies["0"].error
        assert all(replies[i].ok for i in "1234")
        # The stuck worker was replaced: the next round works with the full pool.
        again = train_all(fleet, 2, timeout=4)
        assert sum(r.ok for r in again.values()) == 4


def test_pool_survives_a_learner_process_dying(make_app_spec: Any) -> None:
    spec = make_app_spec(
        task__run_config={"die-partition": 2}, runtime={"mode": "local", "workers": 2}
    )
    with LocalFleet(spec) as fleet:
        replies = train_all(fleet)
        assert replies["2"].error is not None and "died" in replies["2"].error
        assert sum(r.ok for r in replies.values()) == 4


def test_in_process_refuses_a_late_reply_and_runs_every_other_learner(
    make_app_spec: Any,
) -> None:
    # In-process learners stand for learners running at once: each has the whole time to
    # the deadline. The slow one's reply comes after it and is refused; the others, run
    # after it, are not punished for its slowness.
    spec = make_app_spec(task__run_config={"sleep-partition": 0, "sleep-seconds": 1.5})
    with LocalFleet(spec) as fleet:
        replies = train_all(fleet, timeout=1.0)
    late = replies["0"]
    assert not late.ok and late.weights == []
    assert late.error is not None and "replied after" in late.error and "refused" in late.error
    assert all(replies[i].ok for i in "1234")


@pytest.mark.parametrize(
    ("held_replies", "held_bytes", "learners_run_at_each_reply"),
    [(2, 1 << 20, [2, 2, 4, 4, 5]), (16, 1, [1, 2, 3, 4, 5])],
)
def test_in_process_replies_come_in_order_a_bounded_few_at_a_time(
    make_app_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    held_replies: int,
    held_bytes: int,
    learners_run_at_each_reply: list[int],
) -> None:
    from fedpilot.fleet import local

    calls: list[str] = []

    def counting_run_learner(runtime: Any, job: Any) -> Any:
        calls.append(job.learner)
        return local_run_learner(runtime, job)

    local_run_learner = local.run_learner
    monkeypatch.setattr(local, "run_learner", counting_run_learner)
    monkeypatch.setattr(local, "HELD_REPLIES", held_replies)
    monkeypatch.setattr(local, "HELD_BYTES", held_bytes)
    instruction = Instruction("train", WEIGHTS, {"server-round": 1})
    with LocalFleet(make_app_spec()) as fleet:
        learners = {info.id: instruction for info in fleet.learners()}
        seen = []
        for reply in fleet.dispatch(learners, deadline=time.monotonic() + 60):
            seen.append((reply.learner, len(calls)))
    assert [learner for learner, _ in seen] == ["0", "1", "2", "3", "4"]
    assert [ran for _, ran in seen] == learners_run_at_each_reply
