"""The Fleet contract: checks every Fleet passes, and the ClientApp they run against.

The same checks run against LocalFleet (in-process and with a process pool) and
RayFleet from pytest (``tests/fleet/test_contract.py``), and against FlowerFleet inside
a ServerApp under Flower's SuperExec (:data:`server_app`, shipped in a FAB with this
file): a Flower fleet only exists there. The ServerApp writes each check's outcome to
the JSON file named by the run config's ``contract-out``; the pytest test reads it.

Nothing here asserts on time: deadlines are generous, except where a deadline itself is
checked, with a learner that blocks (far longer than any test) or a deadline already past.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedpilot.fleet._base import Fleet
from fedpilot.types import Instruction, LearnerId, Reply

GENEROUS_S = 300.0
"""A deadline no learner of these checks comes near, however loaded the machine."""
BLOCK_S = 180.0
"""How long a "block" learner sleeps: forever, next to the deadline it is given."""
LEARNERS_FOR_FLOWER = 3
RAISED = "contract: the learner raised"
WEIGHTS = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)]

# ---------------------------------------------------------------------------------------
# The learner: one ClientApp, whatever the fleet.

client_app = ClientApp()


def initial_weights() -> list[np.ndarray]:
    return [w.copy() for w in WEIGHTS]


def _answer(msg: Message, context: Context, arrays: list[np.ndarray] | None) -> Message:
    config = msg.content["config"]
    assert isinstance(config, ConfigRecord)
    behave = str(config.get("behave", ""))
    if behave == "raise":
        raise RuntimeError(RAISED)
    if behave == "block":
        time.sleep(BLOCK_S)
    partition = int(context.node_config["partition-id"])
    content = RecordDict(
        {"metrics": MetricRecord({"num-examples": partition + 1, "partition": partition})}
    )
    if arrays is not None:
        content["arrays"] = ArrayRecord(arrays)
    if behave == "bump-state":  # the learner changes its state: every array + 1
        for name, record in msg.content.items():
            if name.startswith("state/") and isinstance(record, ArrayRecord):
                content[name] = ArrayRecord([a + 1 for a in record.to_numpy_ndarrays()])
    return Message(content, reply_to=msg)


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    assert isinstance(arrays, ArrayRecord)
    return _answer(msg, context, [a + 1 for a in arrays.to_numpy_ndarrays()])


@client_app.evaluate()
def _evaluate(msg: Message, context: Context) -> Message:
    return _answer(msg, context, None)


@client_app.query("echo")
def _echo(msg: Message, context: Context) -> Message:
    """A custom phase: sends the instruction's ``payload`` extra back as ``echo``."""
    reply = _answer(msg, context, None)
    payload = msg.content["payload"]
    assert isinstance(payload, ArrayRecord)
    reply.content["echo"] = ArrayRecord(payload.to_numpy_ndarrays())
    return reply


# ---------------------------------------------------------------------------------------
# The checks.


def _ids(fleet: Fleet) -> list[LearnerId]:
    return [info.id for info in fleet.learners()]


def _run(
    fleet: Fleet, instructions: Mapping[LearnerId, Instruction], seconds: float = GENEROUS_S
) -> list[Reply]:
    replies = list(fleet.dispatch(instructions, deadline=time.monotonic() + seconds))
    got = sorted(r.learner for r in replies)
    assert got == sorted(instructions), f"one reply per instruction: {got}"
    for reply in replies:
        assert reply.kind == instructions[reply.learner].kind, reply
    return replies


def _train(**config: str | int) -> Instruction:
    return Instruction("train", WEIGHTS, {"server-round": 1, **config})


def learners_are_stable(fleet: Fleet) -> None:
    first, second = _ids(fleet), _ids(fleet)
    assert len(first) >= 2, first
    assert first == second, (first, second)
    assert len(set(first)) == len(first), first


def one_reply_per_instruction_naming_learner_and_kind(fleet: Fleet) -> None:
    ids = _ids(fleet)
    instructions = {
        lid: _train() if i % 2 == 0 else Instruction("evaluate", WEIGHTS, {"server-round": 1})
        for i, lid in enumerate(ids)
    }
    for reply in _run(fleet, instructions):
        assert reply.ok, reply.error
        assert reply.num_examples is not None and reply.num_examples >= 1
        if reply.kind == "train":  # the learner trained on the weights it was sent
            assert [w.tolist() for w in reply.weights] == [(w + 1).tolist() for w in WEIGHTS]
        else:
            assert reply.weights == []


def a_learner_that_raises_is_a_failed_reply(fleet: Fleet) -> None:
    ids = _ids(fleet)
    instructions = {lid: _train() for lid in ids}
    instructions[ids[0]] = _train(behave="raise")
    replies = {r.learner: r for r in _run(fleet, instructions)}
    failed = replies[ids[0]]
    assert failed.error is not None and failed.weights == [], failed
    assert all(replies[lid].ok for lid in ids[1:]), replies


def state_comes_back_from_a_learner_that_changes_it(fleet: Fleet) -> None:
    first, second = _ids(fleet)[:2]
    state = {"counter/value": [np.array([1.0, 2.0])], "other/x": [np.zeros((2, 2), np.int64)]}
    changing = replace(_train(behave="bump-state"), state=state)
    keeping = replace(_train(), state=state)
    replies = {r.learner: r for r in _run(fleet, {first: changing, second: keeping})}
    changed = replies[first]
    assert changed.ok and changed.state is not None, changed
    assert sorted(changed.state) == sorted(state)
    for key, arrays in state.items():
        assert [a.tolist() for a in changed.state[key]] == [(a + 1).tolist() for a in arrays]
        assert changed.state[key][0].dtype == arrays[0].dtype
    assert changed.extras == {}, "state is not an extra"
    assert replies[second].ok and replies[second].state is None, "unchanged state: None"


def a_custom_query_reaches_the_learner_and_is_answered(fleet: Fleet) -> None:
    ids = _ids(fleet)
    payload = [np.array([3.0, 1.0, 4.0])]
    query = Instruction("query.echo", [], {"server-round": 1}, extras={"payload": payload})
    for reply in _run(fleet, dict.fromkeys(ids, query)):
        assert reply.ok and reply.kind == "query.echo", reply
        assert [a.tolist() for a in reply.extras["echo"]] == [[3.0, 1.0, 4.0]]


def an_unknown_learner_is_rejected(fleet: Fleet) -> None:
    known = _ids(fleet)[0]
    try:
        list(fleet.dispatch({known: _train(), "no-such-learner": _train()}, deadline=_later()))
    except KeyError as exc:
        assert "no-such-learner" in str(exc), exc
    else:
        raise AssertionError("dispatch to an unknown learner id did not raise KeyError")
    # The fleet still works.
    assert all(r.ok for r in _run(fleet, {known: _train()}))


def a_deadline_already_past_fails_every_instruction(fleet: Fleet) -> None:
    ids = _ids(fleet)
    instructions = {lid: _train() for lid in ids}
    replies = list(fleet.dispatch(instructions, deadline=time.monotonic() - 1.0))
    assert sorted(r.learner for r in replies) == sorted(ids)
    for reply in replies:
        assert reply.error is not None and "timeout" in reply.error, reply


def replies_in_order_is_honest(fleet: Fleet) -> None:
    ids = list(reversed(_ids(fleet)))  # not the order learners() lists them in
    replies = _run(fleet, {lid: _train() for lid in ids})
    if fleet.replies_in_order:
        assert [r.learner for r in replies] == ids


def a_learner_that_blocks_fails_at_the_deadline(fleet: Fleet) -> None:
    """Only for fleets that can interrupt a learner (not LocalFleet in-process)."""
    blocked = _ids(fleet)[-1]
    replies = _run(fleet, {blocked: _train(behave="block")}, seconds=3.0)
    assert replies[0].error is not None and "timeout" in replies[0].error, replies[0]


def close_is_idempotent(fleet: Fleet) -> None:
    fleet.close()
    fleet.close()


def _later() -> float:
    return time.monotonic() + GENEROUS_S


Check = Callable[[Fleet], None]
CHECKS: dict[str, Check] = {
    check.__name__: check
    for check in (
        learners_are_stable,
        one_reply_per_instruction_naming_learner_and_kind,
        a_learner_that_raises_is_a_failed_reply,
        state_comes_back_from_a_learner_that_changes_it,
        a_custom_query_reaches_the_learner_and_is_answered,
        an_unknown_learner_is_rejected,
        a_deadline_already_past_fails_every_instruction,
        replies_in_order_is_honest,
        a_learner_that_blocks_fails_at_the_deadline,  # late: its learner stays busy
        close_is_idempotent,  # last: the fleet is closed after it
    )
}
"""Every check, in the order they must run on one fleet."""
NEEDS_INTERRUPTION = {a_learner_that_blocks_fails_at_the_deadline.__name__}


def run_checks(fleet: Fleet, *, interruptible: bool = True) -> dict[str, str]:
    """Each check's outcome on ``fleet``, in :data:`CHECKS`' order: ``"ok"`` or the
    failure's traceback. ``interruptible``: whether the fleet can stop a running learner."""
    outcomes = {}
    for name, check in CHECKS.items():
        if name in NEEDS_INTERRUPTION and not interruptible:
            continue
        try:
            check(fleet)
            outcomes[name] = "ok"
        except Exception:
            outcomes[name] = traceback.format_exc()
    return outcomes


# ---------------------------------------------------------------------------------------
# Under Flower: the checks as a ServerApp.

server_app = ServerApp()


@server_app.main()
def _contract(grid: Grid, context: Context) -> None:
    from fedpilot.fleet.flower.fleet import FlowerFleet

    out = Path(str(context.run_config["contract-out"]))
    try:
        fleet = FlowerFleet(grid)
        deadline = time.monotonic() + GENEROUS_S
        while len(fleet.online()) < LEARNERS_FOR_FLOWER:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(fleet.online())} learners after {GENEROUS_S}s")
            time.sleep(0.2)
        outcomes = run_checks(fleet)
    except Exception:
        outcomes = {"deployment": traceback.format_exc()}
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(outcomes))
    os.replace(partial, out)  # the reader sees the whole file or none
