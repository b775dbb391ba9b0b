"""The contract every built-in Selector keeps, run against each of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fedpilot.orchestrator.checkpoint import decode_state, encode_state
from fedpilot.selection import SELECTORS, LearnerOutcome, Selection, Selector
from fedpilot.types import LearnerInfo, RoundContext

ALL = sorted(SELECTORS)
AVAILABILITY_AWARE = [name for name in ALL if name != "random"]


def ctx(round_: int) -> RoundContext:
    return RoundContext(run_id="r", round=round_, total_rounds=100, seed=7)


def fleet(n: int = 12, unavailable: tuple[int, ...] = (2, 5, 9)) -> list[LearnerInfo]:
    return [
        LearnerInfo(
            id=f"l{i:02d}", partition=i, available=i not in unavailable, declared_examples=50 + i
        )
        for i in range(n)
    ]


def outcome_for(learner: str, round_: int) -> LearnerOutcome:
    """A varied but deterministic outcome: some fail, some are rejected, speeds differ."""
    index = int(learner[1:])
    if (index + round_) % 7 == 0:
        return LearnerOutcome(learner, "failed", duration=30.0, deadline=30.0)
    if (index + round_) % 11 == 0:
        return LearnerOutcome(learner, "rejected", num_examples=60, loss=9.0, duration=3.0)
    return LearnerOutcome(
        learner,
        "accepted",
        num_examples=50 + index,
        loss=1.0 + (index % 4) / round_,
        duration=1.0 + index % 5,
        deadline=30.0,
    )


def play(selector: Selector, rounds: range, size: int = 4, seed: int = 0) -> list[Selection]:
    """Run ``rounds`` of select-then-observe; every chosen learner gets an outcome."""
    learners = fleet()
    picks = []
    for r in rounds:
        rng = np.random.default_rng([seed, r])
        selection = selector.select(candidates=learners, size=size, ctx=ctx(r), rng=rng)
        picks.append(selection)
        outcomes = {learner: outcome_for(learner, r) for learner in selection.chosen}
        selector.observe(ctx=ctx(r), outcomes=outcomes)
    return picks


@pytest.fixture(params=ALL)
def make(request: pytest.FixtureRequest) -> Callable[[], Selector]:
    return SELECTORS[request.param]


@pytest.mark.parametrize("size", [0, 1, 4, 9, 50])
def test_returns_min_of_size_and_eligible_distinct_ids_in_candidate_order(
    make: Callable[[], Selector], size: int
) -> None:
    selector = make()
    learners = fleet()
    order = [info.id for info in learners]
    for r in range(1, 8):
        selection = selector.select(
            candidates=learners, size=size, ctx=ctx(r), rng=np.random.default_rng(r)
        )
        eligible = len(learners) if isinstance(selector, SELECTORS["random"]) else 9
        assert len(selection.chosen) == min(size, eligible)
        assert len(set(selection.chosen)) == len(selection.chosen)
        assert list(selection.chosen) == [i for i in order if i in selection.chosen]
        assert set(selection.reasons) == set(selection.chosen)
        assert all(isinstance(text, str) and text for text in selection.reasons.values())
        selector.observe(
            ctx=ctx(r), outcomes={lid: outcome_for(lid, r) for lid in selection.chosen}
        )


@pytest.mark.parametrize("name", AVAILABILITY_AWARE)
def test_never_picks_unavailable_learners(name: str) -> None:
    selector = SELECTORS[name]()
    for selection in play(selector, range(1, 25), size=8):
        assert not {"l02", "l05", "l09"} & set(selection.chosen)


def test_random_also_draws_unavailable_learners() -> None:
    drawn = set()
    for selection in play(SELECTORS["random"](), range(1, 20), size=6):
        drawn |= set(selection.chosen)
    assert {"l02", "l05", "l09"} & drawn


def test_equal_seeds_give_equal_selections(make: Callable[[], Selector]) -> None:
    first = play(make(), range(1, 15), seed=3)
    second = play(make(), range(1, 15), seed=3)
    assert first == second


def test_select_does_not_change_the_state(make: Callable[[], Selector]) -> None:
    selector = make()
    play(selector, range(1, 6))
    before = as_stored(selector.state_dict())
    a = selector.select(candidates=fleet(), size=4, ctx=ctx(6), rng=np.random.default_rng(1))
    b = selector.select(candidates=fleet(), size=4, ctx=ctx(6), rng=np.random.default_rng(1))
    assert a == b
    assert as_stored(selector.state_dict()) == before


def test_restored_from_a_checkpoint_continues_identically(make: Callable[[], Selector]) -> None:
    original = make()
    play(original, range(1, 9))
    restored = make()
    restored.load_state_dict(through_checkpoint(original.state_dict()))
    assert play(restored, range(9, 20)) == play(original, range(9, 20))
    assert as_stored(restored.state_dict()) == as_stored(original.state_dict())


def test_copes_with_no_outcomes_and_empty_candidates(make: Callable[[], Selector]) -> None:
    selector = make()
    selector.observe(ctx=ctx(1), outcomes={})
    empty = selector.select(candidates=[], size=5, ctx=ctx(2), rng=np.random.default_rng(0))
    assert empty == Selection()
    # Chosen learners whose outcomes never arrive leave the selector usable.
    for r in range(2, 6):
        selection = selector.select(
            candidates=fleet(), size=3, ctx=ctx(r), rng=np.random.default_rng(r)
        )
        assert len(selection.chosen) == 3
        selector.observe(ctx=ctx(r), outcomes={})


def test_all_unavailable_gives_an_empty_selection_unless_random(
    make: Callable[[], Selector],
) -> None:
    learners = [LearnerInfo(id=f"x{i}", available=False) for i in range(4)]
    selection = make().select(candidates=learners, size=2, ctx=ctx(1), rng=np.random.default_rng(0))
    expected = 2 if isinstance(make(), SELECTORS["random"]) else 0
    assert len(selection.chosen) == expected


def test_repeated_candidate_ids_are_chosen_once(make: Callable[[], Selector]) -> None:
    learners = fleet(4, unavailable=()) * 3
    selection = make().select(
        candidates=learners, size=10, ctx=ctx(1), rng=np.random.default_rng(0)
    )
    assert selection.chosen == ("l00", "l01", "l02", "l03")


def test_negative_size_is_refused(make: Callable[[], Selector]) -> None:
    with pytest.raises(ValueError, match="size"):
        make().select(candidates=fleet(), size=-1, ctx=ctx(1), rng=np.random.default_rng(0))


def test_fresh_state_is_storable_and_loads_into_a_fresh_selector(
    make: Callable[[], Selector],
) -> None:
    state = through_checkpoint(make().state_dict())
    selector = make()
    selector.load_state_dict(state)
    selector.load_state_dict({})  # an old checkpoint without selector state
    assert as_stored(selector.state_dict()) == as_stored(make().state_dict())


def as_stored(state: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
    """What a checkpoint stores of ``state``: its JSON text and its arrays' bytes."""
    text, arrays = encode_state(state)
    return text, {key: array.tobytes() for key, array in arrays.items()}


def through_checkpoint(state: dict[str, Any]) -> Any:
    """``state`` after the round trip a checkpoint makes (strict JSON, arrays as binary)."""
    text, arrays = encode_state(state)
    json.loads(text, parse_constant=_refuse)  # no NaN or inf outside arrays
    return decode_state(text, {key: array.copy() for key, array in arrays.items()})


def _refuse(constant: str) -> None:
    raise ValueError(f"state holds {constant}, which strict JSON cannot")
