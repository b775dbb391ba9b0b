"""HeterogeneousFleet: speeds, availability, stragglers, deadline and the virtual clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fedpilot.fleet.simulation import (
    DROPPED_OUT,
    STRAGGLER_DROPPED,
    UNAVAILABLE,
    AttackFleet,
    HeterogeneousFleet,
    build_simulated_fleet,
)
from fedpilot.spec.simulation import SimulationSpec
from fleet.simulation.fakes import EchoFleet, by_id, ids, instructions, run

EXAMPLES = {"0": 100, "1": 200, "2": 300, "3": 400, "4": 500, "5": 600}


def make(raw: dict[str, Any], seed: int = 0, **fake: Any) -> tuple[HeterogeneousFleet, EchoFleet]:
    inner = EchoFleet(EXAMPLES, **fake)
    return HeterogeneousFleet(inner, SimulationSpec.model_validate(raw), seed), inner


def outcome(replies: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.learner, r.error, r.duration, r.num_examples) for r in replies]


def test_durations_are_simulated_and_the_clock_follows_the_slowest() -> None:
    fleet, _ = make({"speed": {"sigma": 0.8, "seconds_per_example": 0.01, "latency": 2.0}})
    replies = run(fleet, ids(6), 1, epochs=3.0)
    expected = {lid: 3 * n * 0.01 / fleet.speed_of(lid) + 2.0 for lid, n in EXAMPLES.items()}
    assert {r.learner: r.duration for r in replies} == pytest.approx(expected)
    assert len(set(expected.values())) == 6  # the speeds really differ
    assert fleet.virtual_time == pytest.approx(max(expected.values()))
    # Evaluation gets simulated durations (one pass) but leaves the clock alone.
    before = fleet.virtual_time
    evaluated = by_id(run(fleet, ids(6), 1, kind="evaluate"))
    assert evaluated["2"].duration == pytest.approx(300 * 0.01 / fleet.speed_of("2") + 2.0)
    assert fleet.virtual_time == before


def test_without_a_speed_section_every_speed_is_one() -> None:
    fleet, _ = make({"deadline": 100.0})
    assert {fleet.speed_of(lid) for lid in EXAMPLES} == {1.0}
    run(fleet, ids(6), 1, epochs=2.0)
    assert fleet.virtual_time == pytest.approx(2 * 600 * 0.001)


SPEC_ALL = {
    "speed": {"distribution": "uniform", "low": 0.5, "high": 2.0, "seconds_per_example": 0.5},
    "availability": {"mean_on": 400, "mean_off": 200},
    "stragglers": {"fraction": 0.3, "policy": "partial"},
    "deadline": 900.0,
}


def test_same_seed_same_behaviour_other_seed_other_behaviour() -> None:
    def history(seed: int) -> tuple[list[Any], list[Any]]:
        fleet, inner = make(SPEC_ALL, seed=seed)
        seen = [outcome(run(fleet, ids(6), r, epochs=4.0)) for r in range(1, 9)]
        return seen, [{k: v.config for k, v in call.items()} for call in inner.calls]

    assert history(5) == history(5)
    assert history(5) != history(6)


def test_availability_decides_who_runs_and_who_drops_out() -> None:
    raw = {
        "speed": {"distribution": "uniform", "low": 1, "high": 1, "seconds_per_example": 0.2},
        "availability": {"mean_on": 150, "mean_off": 100},
    }
    fleet, inner = make(raw, seed=2)
    seen: set[str | None] = set()
    flags = set()
    for round_ in range(1, 30):
        start = fleet.virtual_time
        infos = {info.id: info.available for info in fleet.learners()}
        flags.add(tuple(infos.values()))
        inner.calls.clear()
        replies = by_id(run(fleet, ids(6), round_))
        for lid, reply in replies.items():
            took = 2 * EXAMPLES[lid] * 0.2
            trace = fleet.trace_of(lid)
            assert trace is not None
            if not trace.is_on(start):
                assert not infos[lid] and reply.error == UNAVAILABLE
                assert lid not in inner.ran
            elif trace.next_switch(start) < start + took:
                assert reply.error == DROPPED_OUT and lid in inner.ran
                assert reply.duration == pytest.approx(trace.next_switch(start) - start)
            else:
                assert reply.ok and reply.duration == pytest.approx(took)
            seen.add(reply.error)
        assert fleet.virtual_time > start
    assert seen == {None, UNAVAILABLE, DROPPED_OUT}
    assert len(flags) > 3  # availability flips as virtual time goes on


def test_a_round_with_nobody_online_still_moves_time_on() -> None:
    raw = {"availability": {"mean_on": 10, "mean_off": 10, "initial_on_probability": 0.0}}
    fleet, inner = make(raw)
    replies = run(fleet, ids(6), 1)
    assert all(r.error == UNAVAILABLE for r in replies) and inner.calls == []
    assert fleet.virtual_time > 0
    assert any(fleet.is_available(lid) for lid in EXAMPLES)


def test_stragglers_are_dropped_without_running() -> None:
    fleet, inner = make({"stragglers": {"fraction": 0.5, "policy": "drop"}}, seed=1)
    sets = set()
    for round_ in (1, 2, 3, 4):
        replies = by_id(run(fleet, ids(6), round_))
        dropped = {lid for lid, r in replies.items() if r.error == STRAGGLER_DROPPED}
        assert len(dropped) == 3 and not dropped & set(inner.ran)
        assert all(replies[lid].ok for lid in set(EXAMPLES) - dropped)
        sets.add(frozenset(dropped))
    assert len(sets) > 1  # a new draw each round


@pytest.mark.parametrize("epochs", [5.0, 5, 2.5])
def test_partial_stragglers_run_fewer_whole_epochs(epochs: float) -> None:
    fleet, inner = make({"stragglers": {"fraction": 0.5, "policy": "partial"}}, seed=4)
    done: set[float] = set()
    for round_ in range(1, 12):
        replies = by_id(run(fleet, ids(6), round_, epochs=epochs))
        sent = {lid: ins.config["local-epochs"] for lid, ins in inner.calls[-1].items()}
        partial = {lid: e for lid, e in sent.items() if e != epochs}
        assert len(partial) == 3 and len(sent) == 6
        for lid, value in partial.items():
            assert type(value) is type(epochs)  # the config value keeps its type
            assert float(value).is_integer() and 1 <= value <= epochs - 0.5
            assert replies[lid].duration == pytest.approx(value * EXAMPLES[lid] * 0.001)
            done.add(float(value))
    assert done == set(range(1, int(epochs + 0.5))) - {0}


def test_partial_stragglers_below_two_epochs_run_a_fraction() -> None:
    fleet, inner = make({"stragglers": {"fraction": 1.0, "policy": "partial"}})
    run(fleet, ids(6), 1, epochs=1.0)
    values = [ins.config["local-epochs"] for ins in inner.calls[-1].values()]
    assert all(isinstance(v, float) and 0 < v < 1 for v in values)
    assert len(set(values)) == 6


def test_deadline_drops_slow_learners_before_running_them() -> None:
    raw = {"speed": {"distribution": "uniform", "low": 1, "high": 1}, "deadline": 0.9}
    fleet, inner = make(raw)
    replies = by_id(run(fleet, ids(6), 1, epochs=2.0))  # 2 × n × 0.001: 0.2 … 1.2
    late = {lid for lid, r in replies.items() if not r.ok}
    assert late == {"4", "5"} and set(inner.ran) == {"0", "1", "2", "3"}
    assert "deadline" in (replies["4"].error or "")
    assert fleet.virtual_time == pytest.approx(0.9)  # the server waited until the deadline


def test_deadline_without_declared_sizes_drops_after_running() -> None:
    fleet, inner = make({"deadline": 0.9}, declare=False)
    replies = by_id(run(fleet, ids(6), 1, epochs=2.0))
    assert set(inner.ran) == set(EXAMPLES)
    assert {lid for lid, r in replies.items() if not r.ok} == {"4", "5"}
    assert replies["5"].weights == [] and replies["5"].duration == 0.9
    assert fleet.virtual_time == pytest.approx(0.9)


@pytest.mark.parametrize("in_order", [True, False])
def test_one_reply_per_instruction_in_order_when_the_inner_fleet_is(in_order: bool) -> None:
    raw = {"stragglers": {"fraction": 0.5, "policy": "drop"}}
    fleet, _ = make(raw, in_order=in_order)
    assert fleet.replies_in_order is in_order
    replies = run(fleet, ids(6), 1)
    assert sorted(r.learner for r in replies) == ids(6)
    if in_order:
        assert [r.learner for r in replies] == ids(6)


def test_state_dict_round_trip_resumes_identically() -> None:
    fleet, _ = make(SPEC_ALL, seed=9)
    for round_ in (1, 2, 3):
        run(fleet, ids(6), round_, epochs=4.0)
    state = json.loads(json.dumps(fleet.state_dict()))
    assert state["virtual_time"] == fleet.virtual_time > 0
    resumed, _ = make(SPEC_ALL, seed=9)
    resumed.load_state_dict(state)
    assert resumed.virtual_time == fleet.virtual_time
    for round_ in (4, 5, 6):
        a = run(fleet, ids(6), round_, epochs=4.0)
        b = run(resumed, ids(6), round_, epochs=4.0)
        assert outcome(a) == outcome(b)
    assert resumed.virtual_time == fleet.virtual_time


def test_idle_moves_the_clock() -> None:
    fleet, _ = make({"availability": {"mean_on": 5, "mean_off": 5}})
    assert fleet.idle(3.0) == 3.0
    trace = fleet.trace_of("0")
    assert trace is not None
    nearest = min(t.next_switch(3.0) for t in (fleet.trace_of(lid) for lid in EXAMPLES) if t)
    assert fleet.idle() == pytest.approx(nearest)
    with pytest.raises(ValueError, match="seconds"):
        fleet.idle(-1)


def test_factory_composes_only_what_is_configured() -> None:
    inner = EchoFleet(EXAMPLES)
    assert build_simulated_fleet(inner, None, 0) is inner
    assert build_simulated_fleet(inner, SimulationSpec(), 0) is inner
    attack_only = SimulationSpec.model_validate({"attack": {"fraction": 0.5, "behaviour": "scale"}})
    wrapped = build_simulated_fleet(inner, attack_only, 0)
    assert isinstance(wrapped, AttackFleet) and wrapped.inner is inner
    both = SimulationSpec.model_validate(
        {"deadline": 9, "attack": {"fraction": 0.5, "behaviour": "scale"}}
    )
    stack = build_simulated_fleet(inner, both, 0)
    assert isinstance(stack, AttackFleet) and isinstance(stack.inner, HeterogeneousFleet)
    run(stack, ids(6), 1)
    assert inner.virtual_time is None and stack.virtual_time == stack.inner.virtual_time > 0
    state = json.loads(json.dumps(stack.state_dict()))
    assert state["inner"]["virtual_time"] == stack.virtual_time
    assert state["inner"]["inner"] == {"echo": 1}  # the real fleet's own state, nested
    fresh = build_simulated_fleet(EchoFleet(EXAMPLES), both, 0)
    fresh.load_state_dict(state)
    assert fresh.virtual_time == stack.virtual_time
    assert isinstance(fresh, AttackFleet) and fresh.inner.inner.state_dict() == {"echo": 1}
    stack.close()
    assert inner.closed


def test_instructions_helper_builds_one_per_learner() -> None:
    assert set(instructions(ids(3), 1)) == {"0", "1", "2"}
