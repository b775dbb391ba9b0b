"""Data summaries and the drift tests on them: what a learner sends is small, never its
data, and reads back as sent; the tests score no change as no drift and a shift as one."""

from __future__ import annotations

import numpy as np
import pytest

from fedpilot.drift.compare import (
    feature_shift,
    ks,
    label_distance,
    pooled,
    psi,
    worsening_trend,
)
from fedpilot.drift.summary import DataSummary, feature_matrix, from_arrays, summarize


def _normal(seed: int, n: int = 400, shift: float = 0.0, width: int = 5) -> DataSummary:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, size=(n, width)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return summarize(x, y, max_features=64, quantiles=9)


def test_a_summary_reads_back_as_sent_and_holds_no_example() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=300)
    summary = summarize(x, y, max_features=64, quantiles=9)
    arrays = summary.to_arrays()
    back = from_arrays(arrays)
    assert back.features == summary.features == tuple(f"x[{i}]" for i in range(64))
    np.testing.assert_allclose(back.stats, summary.stats, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back.labels, np.bincount(y, minlength=10))
    assert back.count == 300
    # Statistics of 64 features, not 300 examples: no row of x is in it.
    sent = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays[1:]])
    assert sum(a.nbytes for a in arrays) < 4_000
    assert not any(np.isin(x.reshape(300, -1)[i], sent).all() for i in range(300))


def test_wide_inputs_are_summarized_over_a_bounded_number_of_features() -> None:
    images = np.zeros((10, 3, 32, 32), dtype=np.float32)
    images[:, 1] = 1.0
    matrix, names = feature_matrix(images, max_features=64)
    assert names == ("channel 0", "channel 1", "channel 2")
    np.testing.assert_array_equal(matrix[0], [0.0, 1.0, 0.0])
    signals = np.arange(2 * 1000, dtype=np.float64).reshape(2, 1000)
    matrix, names = feature_matrix(signals, max_features=16)
    assert matrix.shape == (2, 16) and names[0] == "x[0:62]" and names[-1] == "x[937:1000]"
    np.testing.assert_allclose(matrix[0, 0], np.arange(62).mean())
    summary = summarize(signals, np.array([0.5, 1.5]), max_features=16, quantiles=9)
    assert summary.features[-1] == "label" and summary.labels.size == 0  # a regression target


def test_noise_blurs_the_summary_but_keeps_its_shape() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 4)), rng.integers(0, 3, size=200)
    plain = summarize(x, y, max_features=64, quantiles=9)
    noised = summarize(x, y, max_features=64, quantiles=9, noise=2.0, rng=np.random.default_rng(5))
    assert noised.stats.shape == plain.stats.shape and noised.labels.shape == plain.labels.shape
    assert not np.array_equal(noised.stats, plain.stats)
    assert (np.diff(noised.quantiles, axis=1) >= 0).all() and (noised.labels >= 0).all()
    assert np.abs(noised.means - plain.means).max() < 1.0  # a blur, not a new distribution


@pytest.mark.parametrize(
    "arrays",
    [
        [np.zeros(3, np.uint8)],
        [np.frombuffer(b"not json", np.uint8), np.zeros(2), np.zeros((2, 11))],
        [
            np.frombuffer(b'{"count": 5, "features": ["a"]}', np.uint8),
            np.zeros(2),
            np.zeros((5, 3)),
        ],
        [
            np.frombuffer(b'{"count": 5, "features": ["a"]}', np.uint8),
            np.array([np.nan]),
            np.vstack([[0, 0, 0.25, 0.5, 0.75], [0, 1, 0, 0, 0]]),
        ],
    ],
)
def test_a_summary_that_does_not_fit_is_refused(arrays: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="data summary"):
        from_arrays(arrays)


def test_the_same_data_scores_zero_and_shifted_data_scores_high() -> None:
    reference = _normal(0)
    assert label_distance(reference, reference) == 0.0
    for test in ("psi", "ks"):
        same = feature_shift(reference, reference, test)  # type: ignore[arg-type]
        assert same is not None and same[0] == pytest.approx(0.0, abs=1e-9)
    another_sample, shifted = _normal(1), _normal(1, shift=1.0)
    assert psi(reference, another_sample).max() < 0.25
    assert ks(reference, another_sample).max() < 0.2
    assert psi(reference, shifted).min() > 1.0
    assert ks(reference, shifted).min() > 0.3
    # Only feature 3 moves: it is the one named.
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 5))
    x[:, 3] += 2.0
    one = summarize(x, rng.integers(0, 10, size=400), max_features=64, quantiles=9)
    found = feature_shift(another_sample, one, "psi")
    assert found is not None and found[1] == "x[3]"


def test_label_distance_is_zero_for_one_mix_and_one_for_disjoint_classes() -> None:
    def labels(counts: list[float]) -> DataSummary:
        return DataSummary(sum(counts), np.array(counts), (), np.array([0.5]), np.zeros((0, 3)))

    assert label_distance(labels([5, 5]), labels([50, 50])) == pytest.approx(0.0)
    assert label_distance(labels([5, 0]), labels([0, 0, 7])) == pytest.approx(1.0)
    assert label_distance(labels([0, 0]), labels([1, 1])) is None  # no labels: no test


def test_the_federation_consensus_is_not_moved_by_a_drifted_minority() -> None:
    honest = [_normal(seed) for seed in range(6)]
    drifted = [_normal(10 + seed, shift=3.0) for seed in range(2)]
    consensus = pooled([*honest, *drifted])
    assert consensus is not None and consensus.count == 8 * 400
    assert max(psi(consensus, h).max() for h in honest) < 0.5
    assert min(psi(consensus, d).min() for d in drifted) > 2.0
    assert pooled([]) is None


def test_data_with_missing_values_is_summarized_over_the_values_it_has() -> None:
    # Tabular data often has gaps (NaN): a summary of NaNs is refused by the server, so
    # the learner would send one every round and never get a reference.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    x[rng.random(300) < 0.1, 1] = np.nan
    summary = from_arrays(
        summarize(x, rng.integers(0, 3, 300), max_features=8, quantiles=9).to_arrays()
    )
    complete = summarize(x[:, [0, 2]], np.zeros(300, int), max_features=8, quantiles=9)
    np.testing.assert_allclose(summary.stats[[0, 2]], complete.stats, rtol=1e-5, atol=1e-6)
    assert np.isfinite(summary.stats).all() and abs(summary.means[1]) < 0.3


def test_the_consensus_describes_the_features_most_learners_describe() -> None:
    # The first learner (by id, as the watch pools them) describes other features: it
    # must not be the consensus, or the others are compared with nothing (a learner can
    # choose what it sends).
    odd = _normal(20, width=3)
    honest = [_normal(seed) for seed in range(5)]
    drifted = _normal(30, shift=3.0)
    consensus = pooled([odd, *honest, drifted])
    assert consensus is not None and consensus.features == honest[0].features
    assert consensus.count == 6 * 400  # the members it describes
    found = feature_shift(consensus, drifted, "psi")
    assert found is not None and found[0] > 2.0
    # Its labels still count (the odd learner's classes are the same kind of thing).
    assert consensus.labels.sum() == pytest.approx(consensus.count)


def test_the_trend_test_flags_a_steady_decline_only() -> None:
    falling = [0.9, 0.88, 0.85, 0.84, 0.8, 0.78, 0.75, 0.71]
    p, decline = worsening_trend(falling, higher_is_better=True)
    assert p < 0.01 and decline == pytest.approx(0.19, abs=0.02)
    rising = falling[::-1]
    assert worsening_trend(rising, higher_is_better=True)[0] > 0.5
    assert worsening_trend(rising, higher_is_better=False)[0] < 0.01  # a rising loss
    noisy = [0.8, 0.82, 0.79, 0.81, 0.8, 0.83, 0.79, 0.81]
    assert worsening_trend(noisy, higher_is_better=True)[0] > 0.05
    assert worsening_trend([0.5] * 8, higher_is_better=True) == (1.0, 0.0)
