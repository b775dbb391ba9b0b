"""What each selector is for, on small synthetic federations with fixed speeds and losses."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from fedpilot.selection import (
    LearnerOutcome,
    OortSelector,
    PowerOfChoiceSelector,
    Selector,
    UcbSelector,
    contributions,
)
from fedpilot.types import LearnerInfo, RoundContext


@dataclass(frozen=True)
class Profile:
    examples: int
    loss: float
    duration: float
    fails: bool = False


def ctx(round_: int) -> RoundContext:
    return RoundContext(run_id="sim", round=round_, total_rounds=1000, seed=0)


def simulate(
    selector: Selector,
    profiles: dict[str, Profile],
    *,
    rounds: int,
    size: int,
    noise: float = 0.0,
    seed: int = 0,
) -> list[tuple[str, ...]]:
    """Rounds of select → outcomes drawn from ``profiles`` → observe; the choices made."""
    learners = [LearnerInfo(id=lid, declared_examples=p.examples) for lid, p in profiles.items()]
    env = np.random.default_rng(seed + 1)
    history = []
    for r in range(1, rounds + 1):
        selection = selector.select(
            candidates=learners, size=size, ctx=ctx(r), rng=np.random.default_rng([seed, r])
        )
        outcomes = {}
        for lid in selection.chosen:
            p = profiles[lid]
            scale = max(0.05, 1.0 + noise * float(env.standard_normal()))
            if p.fails:
                outcomes[lid] = LearnerOutcome(lid, "failed", duration=p.duration)
            else:
                outcomes[lid] = LearnerOutcome(
                    lid, "accepted", p.examples, p.loss * scale, p.duration * scale
                )
        selector.observe(ctx=ctx(r), outcomes=outcomes)
        history.append(selection.chosen)
    return history


def picks(history: list[tuple[str, ...]]) -> Counter[str]:
    return Counter(lid for chosen in history for lid in chosen)


# ---------------------------------------------------------------- power of choice


def losses_fleet(n: int = 20) -> dict[str, Profile]:
    return {f"l{i:02d}": Profile(examples=100, loss=0.1 * (i + 1), duration=1.0) for i in range(n)}


def test_power_of_choice_with_everyone_drawn_takes_the_highest_losses() -> None:
    profiles = losses_fleet()
    history = simulate(PowerOfChoiceSelector(factor=100), profiles, rounds=10, size=5)
    # Rounds 1-4 meet every learner once (never-seen learners go first)...
    assert len(picks(history[:4])) == 20
    # ...then the five highest losses win every time.
    assert all(chosen == ("l15", "l16", "l17", "l18", "l19") for chosen in history[4:])


def test_power_of_choice_prefers_high_loss_over_uniform() -> None:
    profiles = losses_fleet()
    history = simulate(PowerOfChoiceSelector(factor=2), profiles, rounds=200, size=4)
    chosen_loss = np.mean([profiles[lid].loss for chosen in history[5:] for lid in chosen])
    all_loss = np.mean([p.loss for p in profiles.values()])
    assert chosen_loss > all_loss + 0.25


def test_power_of_choice_reasons_name_the_loss() -> None:
    selector = PowerOfChoiceSelector(factor=1)
    simulate(selector, losses_fleet(3), rounds=1, size=3)
    selection = selector.select(
        candidates=[LearnerInfo(id="l02"), LearnerInfo(id="new")],
        size=2,
        ctx=ctx(2),
        rng=np.random.default_rng(0),
    )
    assert selection.reasons["new"].startswith("never seen")
    assert "last loss 0.3" in selection.reasons["l02"]


# ---------------------------------------------------------------- oort


def oort_fleet() -> dict[str, Profile]:
    fleet = {}
    for i in range(5):  # fast, informative
        fleet[f"fast{i}"] = Profile(examples=100, loss=2.0, duration=1.0)
    for i in range(5):  # as informative, twenty times slower
        fleet[f"slow{i}"] = Profile(examples=100, loss=2.0, duration=20.0)
    for i in range(20):  # fast, little to teach
        fleet[f"dull{i:02d}"] = Profile(examples=10, loss=0.5, duration=1.0)
    return fleet


def test_oort_explores_everyone_then_exploits_fast_high_utility_learners() -> None:
    history = simulate(OortSelector(), oort_fleet(), rounds=80, size=5, noise=0.05)
    assert len(picks(history[:10])) == 30  # exploration meets the whole fleet early
    late = picks(history[40:])
    fast = sum(n for lid, n in late.items() if lid.startswith("fast"))
    slow = sum(n for lid, n in late.items() if lid.startswith("slow"))
    assert fast >= 0.9 * 40 * 5
    assert slow <= 4


def test_oort_penalises_learners_slower_than_the_preferred_duration() -> None:
    selector = OortSelector(preferred_duration=5.0, alpha=2.0, staleness=0.0)
    selector.observe(
        ctx=ctx(1),
        outcomes={
            "a": LearnerOutcome("a", "accepted", 100, 1.0, duration=5.0),
            "b": LearnerOutcome("b", "accepted", 100, 1.0, duration=10.0),
            "c": LearnerOutcome("c", "accepted", 10, 1.0, duration=1.0),
        },
    )
    infos = [LearnerInfo(id=x) for x in "abc"]
    a, b, c = selector.utilities(infos, round_=2)
    assert (a, c) == (1.0, 0.0)
    assert b == pytest.approx(a * (5.0 / 10.0) ** 2)
    selection = selector.select(candidates=infos, size=3, ctx=ctx(2), rng=np.random.default_rng(0))
    assert "slow: 10 s > preferred 5 s" in selection.reasons["b"]


def test_oort_exploration_prefers_larger_declared_datasets() -> None:
    learners = [
        LearnerInfo(id=f"l{i:02d}", declared_examples=10_000 if i % 10 == 0 else 1)
        for i in range(100)
    ]
    selection = OortSelector().select(
        candidates=learners, size=10, ctx=ctx(1), rng=np.random.default_rng(0)
    )
    big = [lid for lid in selection.chosen if int(lid[1:]) % 10 == 0]
    assert len(big) >= 9
    assert all(text.startswith("explore: never tried") for text in selection.reasons.values())


def test_oort_exploration_share_decays_to_its_floor() -> None:
    selector = OortSelector(exploration=0.9, exploration_decay=0.5, exploration_min=0.2)
    assert selector.epsilon(1) == 0.9
    assert selector.epsilon(2) == 0.45
    assert selector.epsilon(50) == 0.2


def test_oort_blacklists_repeated_failures_then_gives_a_reprieve() -> None:
    selector = OortSelector(max_failures=2, blacklist_rounds=3)
    learners = [LearnerInfo(id="bad"), LearnerInfo(id="ok1"), LearnerInfo(id="ok2")]
    for r in (1, 2):
        selector.observe(
            ctx=ctx(r),
            outcomes={
                "bad": LearnerOutcome("bad", "failed"),
                "ok1": LearnerOutcome("ok1", "accepted", 10, 1.0, 1.0),
                "ok2": LearnerOutcome("ok2", "accepted", 10, 1.0, 1.0),
            },
        )
    for r in (3, 4, 5):  # banned until round 5
        selection = selector.select(
            candidates=learners, size=2, ctx=ctx(r), rng=np.random.default_rng(r)
        )
        assert selection.chosen == ("ok1", "ok2")
    # Needed anyway when too few others are available: chosen as a last resort.
    selection = selector.select(
        candidates=learners, size=3, ctx=ctx(5), rng=np.random.default_rng(0)
    )
    assert selection.reasons["bad"].startswith("last resort: blacklisted until round 5")
    # The reprieve: eligible again from round 6, with a clean slate.
    selection = selector.select(
        candidates=learners[:2], size=2, ctx=ctx(6), rng=np.random.default_rng(0)
    )
    assert selection.chosen == ("bad", "ok1")
    assert selection.reasons["bad"].startswith("exploit")


def test_oort_rejected_updates_count_as_failures_and_their_loss_is_ignored() -> None:
    selector = OortSelector(max_failures=1)
    selector.observe(ctx=ctx(1), outcomes={"x": LearnerOutcome("x", "rejected", 10, 99.0, 1.0)})
    record = selector.log.get("x")
    assert record is not None and record.loss is None and record.rejected == 1
    assert selector.banned_until == {"x": 11}


# ---------------------------------------------------------------- ucb


def test_contributions_are_utility_per_second_scaled_to_the_round_best() -> None:
    rewards = contributions(
        {
            "a": LearnerOutcome("a", "accepted", 100, 2.0, duration=2.0),  # 100 per second
            "b": LearnerOutcome("b", "accepted", 100, 1.0, duration=4.0),  # 25
            "c": LearnerOutcome("c", "failed", duration=1.0),
            "d": LearnerOutcome("d", "rejected", 100, 5.0, duration=1.0),
            "e": LearnerOutcome("e", "accepted", 100, 2.0),  # no duration: as slow as the slowest
        }
    )
    assert rewards == {"a": 1.0, "b": 0.25, "c": 0.0, "d": 0.0, "e": 0.5}


def test_ucb_tries_everyone_first() -> None:
    history = simulate(UcbSelector(), losses_fleet(12), rounds=3, size=4)
    assert len(picks(history)) == 12


@pytest.mark.parametrize(("c", "share"), [(0.5, 0.85), (1.0, 0.8)])
def test_ucb_converges_to_the_best_arms(c: float, share: float) -> None:
    profiles = {
        # Contribution examples·loss/duration: the four "best" ones are 2-4 times the rest.
        **{f"best{i}": Profile(100, 1.0 + 0.1 * i, 1.0) for i in range(4)},
        **{f"slow{i}": Profile(100, 1.2, 3.0 + i) for i in range(6)},
        **{f"tiny{i}": Profile(30, 1.0, 1.0) for i in range(6)},
        **{f"flaky{i}": Profile(100, 2.0, 1.0, fails=True) for i in range(2)},
    }
    history = simulate(UcbSelector(c=c), profiles, rounds=300, size=4, noise=0.1)
    late = picks(history[-100:])
    best = sum(n for lid, n in late.items() if lid.startswith("best"))
    assert best >= share * 100 * 4
    assert all(late[f"flaky{i}"] <= 3 for i in range(2))


def test_a_failure_without_a_duration_counts_as_using_the_whole_deadline() -> None:
    selector = OortSelector(pacer_quantile=0.0)
    selector.observe(
        ctx=ctx(1),
        outcomes={
            "gone": LearnerOutcome("gone", "failed", deadline=60.0),
            "fast": LearnerOutcome("fast", "accepted", 10, 1.0, duration=2.0, deadline=60.0),
        },
    )
    record = selector.log.get("gone")
    assert record is not None and record.duration == 60.0
    assert selector.preferred_seconds() == 2.0
