"""Learner-level DP: the noise the server adds is what the accountant is told, ε grows
with every round, and adaptive clipping moves toward its quantile."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fedpilot.privacy import LearnerDP, PrivacyAccountant
from fedpilot.privacy.learner_dp import UNCLIPPED
from fedpilot.types import RoundContext, Update


def _dp(**changes: object) -> LearnerDP:
    params: dict[str, object] = {
        "mode": "central",
        "clipping": "fixed",
        "clip_norm": 0.5,
        "noise_multiplier": 1.3,
        "cohort": 10,
        "population": 100,
        "sampling": "fixed_size",
        "delta": 1e-5,
    }
    params.update(changes)
    return LearnerDP(**params)  # type: ignore[arg-type]


def _ctx(round_: int) -> RoundContext:
    return RoundContext(run_id="t", round=round_, total_rounds=100, seed=3)


def test_central_noise_std_matches_the_accountants_inputs() -> None:
    # Ten zero updates: the server's output is the noise alone, whose std on the mean
    # must be z·C/n with the z and n the accountant composes.
    dp = _dp()
    reference = [np.zeros(200_000, dtype=np.float64)]
    for i in range(10):
        update = dp.before_fold(
            Update(str(i), [np.zeros(200_000)], 1), reference=reference, ctx=_ctx(1)
        )
        dp.on_accepted(update, ctx=_ctx(1))
    noised = dp.on_server([np.zeros(200_000)], reference=reference, ctx=_ctx(1))[0]
    expected = dp.accountant.noise_multiplier * 0.5 / dp.accountant.cohort
    assert dp.accountant.noise_multiplier == 1.3 and dp.accountant.cohort == 10
    assert noised.std() == pytest.approx(expected, rel=0.01)
    assert abs(noised.mean()) < 5 * expected / np.sqrt(noised.size)


def test_distributed_noise_shares_sum_to_the_central_std() -> None:
    # Each learner adds std/sqrt(n); the server divides the sum of n by n: z·C/n on the mean.
    from fedpilot.transforms import LearnerContext, LearnerOutput, LocalWork

    dp = _dp(mode="distributed", cohort=16, population=16)
    zeros = [np.zeros(50_000)]
    total = np.zeros(50_000)
    for i in range(16):
        work = LocalWork(
            "train",
            zeros,
            None,
            {},
            extras=dp.train_extras(learner=str(i), weights=zeros, ctx=_ctx(1)),
        )
        ctx = LearnerContext(learner=str(i), round=1, kind="train", config={"seed": 100 + i})
        out = dp.on_learner(
            work, lambda w: LearnerOutput([np.zeros(50_000)], {}, 1), state={}, ctx=ctx
        )
        assert out.metrics[UNCLIPPED] == 1.0
        update = Update(str(i), out.weights, 1, out.metrics)
        dp.on_accepted(update, ctx=_ctx(1))
        total += out.weights[0]
    mean = dp.on_server([total / 16], reference=zeros, ctx=_ctx(1))[0]
    assert mean.std() == pytest.approx(1.3 * 0.5 / 16, rel=0.02)


def test_a_long_update_is_clipped_to_the_bound() -> None:
    dp = _dp()
    reference = [np.ones(4)]
    update = dp.before_fold(Update("a", [np.ones(4) + 3.0], 1), reference=reference, ctx=_ctx(1))
    assert np.linalg.norm(update.weights[0] - 1.0) == pytest.approx(0.5)
    assert update.metrics[UNCLIPPED] == 0.0


@pytest.mark.parametrize("sampling", ["fixed_size", "poisson"])
def test_epsilon_grows_with_every_round(sampling: str) -> None:
    accountant = PrivacyAccountant(
        noise_multiplier=1.1,
        population=500,
        cohort=50,
        sampling=sampling,
        delta=1e-5,  # type: ignore[arg-type]
    )
    eps = [accountant.epsilon(r) for r in range(0, 30)]
    assert eps[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(eps))


@pytest.mark.parametrize(("z", "rounds"), [(2.0, 1), (4.0, 10), (10.0, 40)])
def test_a_full_fixed_size_cohort_is_accounted_at_the_replace_one_sensitivity(
    z: float, rounds: int
) -> None:
    # Every learner every round: no sampling, so ε is that of `rounds` Gaussian mechanisms
    # whose sensitivity under replace-one is 2C. The exact ε of that Gaussian (Balle and
    # Wang 2018) is a floor the RDP bound may not go under, and RDP is tight to ~10% here.
    from scipy.optimize import brentq
    from scipy.stats import norm

    mu = 2 * np.sqrt(rounds) / z  # sensitivity 2C over noise z·C, composed `rounds` times

    def delta_at(eps: float) -> float:
        tail = norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * norm.cdf(-eps / mu - mu / 2)
        return float(tail) - 1e-5

    exact = brentq(delta_at, 0.0, 100.0)
    accountant = PrivacyAccountant(
        noise_multiplier=z, population=20, cohort=20, sampling="fixed_size", delta=1e-5
    )
    assert exact <= accountant.epsilon(rounds) <= 1.15 * exact


def test_adaptive_clip_moves_toward_the_target_quantile() -> None:
    # Update norms uniform on [0, 10]: the median is 5. From clip 0.1 (nearly every update
    # clipped) and from 50 (none), the clip goes to about 5.
    rng = np.random.default_rng(0)
    for start in (0.1, 50.0):
        dp = _dp(
            clipping="adaptive",
            clip_norm=start,
            cohort=100,
            population=1000,
            noise_multiplier=0.5,
            clipped_count_stddev=2.0,
            target_quantile=0.5,
        )
        reference = [np.zeros(3)]
        for round_ in range(1, 80):
            for i in range(100):
                direction = rng.normal(size=3)
                delta = direction / np.linalg.norm(direction) * rng.uniform(0, 10)
                update = dp.before_fold(
                    Update(str(i), [delta], 1), reference=reference, ctx=_ctx(round_)
                )
                dp.on_accepted(update, ctx=_ctx(round_))
            dp.on_server([np.zeros(3)], reference=reference, ctx=_ctx(round_))
        assert 3.5 < dp.clip < 6.5, (start, dp.clip)


def test_a_rolled_back_clip_returns_but_the_spent_budget_does_not() -> None:
    dp = _dp(clipping="adaptive", clipped_count_stddev=2.0)
    before = dp.state_dict()
    dp.on_server([np.zeros(2)], reference=[np.zeros(2)], ctx=_ctx(1))
    assert dp.clip != before["clip"]
    dp.load_state_dict(before)
    assert dp.clip == before["clip"]
    assert dp.accountant.rounds == 1
