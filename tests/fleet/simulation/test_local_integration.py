"""The wrappers around a real LocalFleet training synthetic-logreg learners."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedpilot.fleet import Fleet, LocalFleet
from fedpilot.fleet.simulation import AttackFleet, HeterogeneousFleet, build_simulated_fleet
from fedpilot.learner.protocol import train_config
from fedpilot.spec import FederationSpec, validate_spec
from fedpilot.spec.simulation import SimulationSpec
from fedpilot.tasks._base import TrainSettings
from fedpilot.types import Instruction, Reply

REFERENCE = [np.zeros((10, 60), np.float32), np.zeros(10, np.float32)]
SIMULATION: dict[str, Any] = {
    "speed": {"distribution": "lognormal", "sigma": 1.0, "seconds_per_example": 0.01},
    "stragglers": {"fraction": 0.5, "policy": "partial"},
}


def federation(tmp_path: Path) -> FederationSpec:
    return validate_spec(
        {
            "name": "simulated",
            "seed": 11,
            "task": {"name": "synthetic-logreg"},
            "data": {"num_learners": 4},
            "rounds": 1,
            "guard": {"enabled": False},
            "tracking": {"enabled": False},
            "runtime": {"mode": "local", "workers": 0, "round_timeout": 60},
            "output_dir": str(tmp_path / "runs"),
        }
    )


def train(fleet: Fleet, round_: int) -> dict[str, Reply]:
    config = train_config(TrainSettings(epochs=3, batch_size=16, seed=5), round_)
    batch = {info.id: Instruction("train", REFERENCE, config) for info in fleet.learners()}
    replies = list(fleet.dispatch(batch, deadline=time.monotonic() + 60))
    assert sorted(r.learner for r in replies) == sorted(batch)
    return {r.learner: r for r in replies}


def test_simulated_stack_around_a_local_fleet(tmp_path: Path) -> None:
    spec = federation(tmp_path)
    attacked = SimulationSpec.model_validate(
        {**SIMULATION, "attack": {"fraction": 0.25, "behaviour": "sign_flip"}}
    )
    honest_only = SimulationSpec.model_validate(SIMULATION)
    with (
        build_simulated_fleet(LocalFleet(spec), attacked, spec.seed) as stack,
        build_simulated_fleet(LocalFleet(spec), honest_only, spec.seed) as plain,
    ):
        assert isinstance(stack, AttackFleet) and isinstance(stack.inner, HeterogeneousFleet)
        assert isinstance(plain, HeterogeneousFleet)
        (attacker,) = stack.attackers
        poisoned, honest = train(stack, 1), train(plain, 1)
        simulated = stack.inner
        done = []
        for lid, reply in honest.items():
            assert reply.ok, reply.error
            speed = simulated.speed_of(lid)
            assert speed == plain.speed_of(lid)
            # Stragglers ran fewer epochs; each duration is one of 1..3 epochs of work.
            epochs = reply.duration / (float(reply.num_examples or 0) * 0.01 / speed)
            assert epochs == pytest.approx(round(epochs)) and 1 <= round(epochs) <= 3
            done.append(round(epochs))
            assert poisoned[lid].duration == pytest.approx(reply.duration)
            expected = reply.weights
            if lid == attacker:  # sign flip around the zero reference: the negated model
                expected = [-w for w in reply.weights]
            for got, want in zip(poisoned[lid].weights, expected, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert done.count(3) == 2  # half of the four learners straggled
        assert simulated.virtual_time == pytest.approx(max(r.duration for r in honest.values()))
        assert simulated.virtual_time == plain.virtual_time > 0


def test_deadline_and_label_flip_around_a_local_fleet(tmp_path: Path) -> None:
    spec = federation(tmp_path)
    with LocalFleet(spec) as plain:
        sizes = {info.id: info.declared_examples or 0 for info in plain.learners()}
        took = sorted(3 * n * 0.01 for n in sizes.values())
        assert took[1] < took[2]
        limit = (took[1] + took[2]) / 2
        simulation = SimulationSpec.model_validate(
            {
                "speed": {
                    "distribution": "uniform",
                    "low": 1,
                    "high": 1,
                    "seconds_per_example": 0.01,
                },
                "deadline": limit,
                "attack": {"fraction": 0.5, "behaviour": "label_flip"},
            }
        )
        with build_simulated_fleet(LocalFleet(spec), simulation, spec.seed) as stack:
            assert isinstance(stack, AttackFleet)
            replies, honest = train(stack, 1), train(plain, 1)
        fast = {lid for lid, n in sizes.items() if 3 * n * 0.01 <= limit}
        assert {lid for lid, r in replies.items() if r.ok} == fast
        for lid in set(sizes) - fast:
            assert "deadline" in (replies[lid].error or "") and replies[lid].duration == 0
        for lid in fast:
            flipped = lid in stack.attackers
            differs = not np.allclose(replies[lid].weights[0], honest[lid].weights[0])
            assert differs is flipped, lid
        assert fast & stack.attackers and fast - stack.attackers  # both kinds ran
        assert stack.virtual_time == pytest.approx(limit)
