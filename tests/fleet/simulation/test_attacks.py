"""AttackFleet: who attacks, and each behaviour's arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedpilot.fleet.simulation import LABEL_FLIP, AttackFleet, HeterogeneousFleet, lie_z
from fedpilot.spec.simulation import AttackSpec, SimulationSpec
from fedpilot.types import Weights
from fleet.simulation.fakes import REFERENCE, EchoFleet, by_id, ids, instructions, run

EXAMPLES = {lid: 100 for lid in ids(10)}
OFFSETS = {lid: float(i + 1) for i, lid in enumerate(ids(10))}


def make(seed: int = 0, **raw: Any) -> tuple[AttackFleet, EchoFleet]:
    inner = EchoFleet(EXAMPLES, offsets=OFFSETS, in_order=raw.pop("in_order", True))
    return AttackFleet(inner, AttackSpec.model_validate(raw), seed), inner


def honest(lid: str, weights: Weights = REFERENCE) -> Weights:
    return [w + np.asarray(OFFSETS[lid]).astype(w.dtype) for w in weights]


def same(a: Weights, b: Weights) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.allclose(x, y, rtol=1e-6, atol=1e-6)
        for x, y in zip(a, b, strict=True)
    )


def test_attackers_are_the_fraction_and_fixed() -> None:
    fleet, _ = make(fraction=0.3, behaviour="sign_flip", seed=4)
    assert len(fleet.attackers) == 3 and fleet.attackers <= set(EXAMPLES)
    assert make(fraction=0.3, behaviour="scale", seed=4)[0].attackers == fleet.attackers
    others = {make(fraction=0.3, behaviour="scale", seed=s)[0].attackers for s in range(6)}
    assert len(others) > 1
    assert make(fraction=0.0, behaviour="scale")[0].attackers == frozenset()
    # Fixed across rounds: the same learners poison in every round.
    for round_ in (1, 2, 3):
        replies = by_id(run(fleet, ids(10), round_))
        poisoned = {lid for lid, r in replies.items() if not same(r.weights, honest(lid))}
        assert poisoned == fleet.attackers


@pytest.mark.parametrize(
    ("behaviour", "scale", "factor"),
    [("sign_flip", None, -1.0), ("sign_flip", 2.5, -2.5), ("scale", None, 10.0), ("scale", 3, 3.0)],
)
def test_sign_flip_and_scale_are_exact(behaviour: str, scale: float | None, factor: float) -> None:
    raw: dict[str, Any] = {"fraction": 0.3, "behaviour": behaviour}
    if scale is not None:
        raw["scale"] = scale
    fleet, _ = make(**raw)
    replies = by_id(run(fleet, ids(10), 1))
    for lid, reply in replies.items():
        if lid not in fleet.attackers:
            assert same(reply.weights, honest(lid))
            continue
        update = OFFSETS[lid]
        assert same(reply.weights[:2], [r + factor * update for r in REFERENCE[:2]])
        assert reply.weights[0].dtype == np.float32
        # Integer arrays (step counters) are passed through as the learner sent them.
        assert np.array_equal(reply.weights[2], honest(lid)[2])
        assert reply.num_examples == 100


def test_gaussian_replaces_the_update_with_seeded_noise() -> None:
    big: Weights = [np.zeros(40_000, np.float32), np.arange(3, dtype=np.int32)]
    fleet, _ = make(fraction=0.2, behaviour="gaussian", noise_std=0.5, seed=1)
    replies = by_id(run(fleet, ids(10), 7, weights=big))
    noises = []
    for lid in sorted(fleet.attackers):
        noise = replies[lid].weights[0].astype(np.float64) - big[0]
        assert abs(noise.mean()) < 0.01 and noise.std() == pytest.approx(0.5, rel=0.02)
        assert np.array_equal(replies[lid].weights[1], big[1] + 1 + int(lid))
        noises.append(noise)
    assert not np.allclose(noises[0], noises[1])  # each attacker its own stream
    # Per-learner streams: the reply order of the inner fleet does not matter.
    again, _ = make(fraction=0.2, behaviour="gaussian", noise_std=0.5, seed=1, in_order=False)
    reversed_ = by_id(run(again, ids(10), 7, weights=big))
    for lid in fleet.attackers:
        assert np.array_equal(reversed_[lid].weights[0], replies[lid].weights[0])
    # Another round, other noise.
    later = by_id(run(fleet, ids(10), 8, weights=big))
    lid = min(fleet.attackers)
    assert not np.array_equal(later[lid].weights[0], replies[lid].weights[0])


def test_label_flip_only_sets_the_config_key_for_attackers_training() -> None:
    fleet, inner = make(fraction=0.3, behaviour="label_flip")
    replies = by_id(run(fleet, ids(10), 1))
    sent = inner.calls[-1]
    for lid, ins in sent.items():
        assert (LABEL_FLIP in ins.config) is (lid in fleet.attackers)
        assert ins.config.get(LABEL_FLIP, True) is True
        assert same(replies[lid].weights, honest(lid))
    run(fleet, ids(10), 1, kind="evaluate")
    assert all(LABEL_FLIP not in ins.config for ins in inner.calls[-1].values())


def test_lie_z_follows_the_paper() -> None:
    from scipy.stats import norm

    # n = 10, m = 3: s = ⌊6⌋ − 3 = 3, z = Φ⁻¹(7/10).
    assert lie_z(10, 3) == pytest.approx(norm.ppf(0.7))
    assert lie_z(50, 12) == pytest.approx(norm.ppf((50 - 14) / 50))
    assert lie_z(4, 3) == pytest.approx(norm.ppf(0.75))  # a majority: s kept at 1
    assert lie_z(10, 0) == 0.0


def test_lie_sends_mean_minus_z_std_after_the_honest_replies() -> None:
    fleet, _ = make(fraction=0.3, behaviour="lie", seed=2)
    cohort = ids(10)
    replies = run(fleet, cohort, 1)
    order = [r.learner for r in replies]
    attackers = [lid for lid in cohort if lid in fleet.attackers]
    assert order == [lid for lid in cohort if lid not in fleet.attackers] + attackers
    models = [honest(lid) for lid in attackers]
    z = lie_z(10, 3)
    stacked = np.stack([m[0].astype(np.float64) for m in models])
    expected = stacked.mean(axis=0) - z * stacked.std(axis=0)
    for reply in replies[-3:]:
        assert np.allclose(reply.weights[0], expected, atol=1e-6)
        assert reply.weights[0].dtype == np.float32
        assert np.array_equal(reply.weights[2], models[0][2])  # integers untouched
    assert z > 0 and not np.allclose(expected, stacked.mean(axis=0))


def test_lie_with_a_fixed_z_and_a_smaller_cohort() -> None:
    fleet, _ = make(fraction=0.3, behaviour="lie", z=1.5, seed=2)
    cohort = sorted(fleet.attackers)[:2] + [lid for lid in ids(10) if lid not in fleet.attackers]
    replies = by_id(run(fleet, cohort, 1))
    a, b = (honest(lid)[1] for lid in sorted(fleet.attackers)[:2])
    mean, std = (a + b) / 2, np.abs(a - b) / 2
    for lid in sorted(fleet.attackers)[:2]:
        assert np.allclose(replies[lid].weights[1], mean - 1.5 * std)


def test_evaluation_and_failed_replies_pass_through() -> None:
    inner = EchoFleet(EXAMPLES, offsets=OFFSETS)
    simulated = HeterogeneousFleet(
        inner,
        SimulationSpec.model_validate(
            {"availability": {"mean_on": 1, "mean_off": 1e9, "initial_on_probability": 0}}
        ),
        0,
    )
    spec = AttackSpec(fraction=0.3, behaviour="scale")
    fleet = AttackFleet(simulated, spec, 0)
    assert all(not r.ok for r in run(fleet, ids(10), 1))
    plain = AttackFleet(EchoFleet(EXAMPLES, offsets=OFFSETS), spec, 0)
    evaluated = run(plain, ids(10), 1, kind="evaluate")
    assert all(r.ok and r.weights == [] for r in evaluated)
    assert plain.replies_in_order and len(plain.learners()) == 10


def test_instructions_are_not_mutated() -> None:
    fleet, _ = make(fraction=0.3, behaviour="label_flip")
    batch = instructions(ids(10), 1)
    before = {lid: dict(ins.config) for lid, ins in batch.items()}
    list(fleet.dispatch(batch, deadline=1e18))
    assert {lid: dict(ins.config) for lid, ins in batch.items()} == before
