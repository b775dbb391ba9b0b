"""Each rule against a naive in-memory numpy version, and the rules' own edge cases."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aggregation._cases import fold, random_cohort
from fedpilot.aggregation import (
    AGGREGATION_RULES,
    AggregationRule,
    Bulyan,
    GeometricMedian,
    Krum,
    Mean,
    Median,
    MultiKrum,
    RuleAggregator,
    TrimmedMean,
    build_rule,
)
from fedpilot.aggregation.rules._ops import byzantine_count
from fedpilot.errors import SpecError
from fedpilot.spec.aggregation import BUILTIN_RULES, AggregationSpec
from fedpilot.types import Weights

Matrix = npt.NDArray[np.float64]


def deltas(reference: Weights, cohort: list[tuple[str, Weights, int]]) -> tuple[Matrix, Matrix]:
    """The float32 delta rows in canonical order (as the buffer stores them) and weights."""
    ordered = sorted(cohort)
    rows = np.stack(
        [
            np.concatenate([(np.float32(u) - r).ravel() for u, r in zip(w, reference, strict=True)])
            for _, w, _ in ordered
        ]
    ).astype(np.float32)
    return rows.astype(np.float64), np.array([c for _, _, c in ordered], dtype=np.float64)


def combined_delta(rule: AggregationRule, cohort_size: int, seed: int, chunk: int = 5) -> tuple:
    reference, cohort = random_cohort(np.random.default_rng(seed), cohort_size)
    agg = RuleAggregator(rule, chunk_size=chunk)
    result = fold(agg, reference, cohort)
    got = np.concatenate([(g - r).ravel() for g, r in zip(result, reference, strict=True)])
    rows, weights = deltas(reference, cohort)
    return got.astype(np.float64), rows, weights, agg.last_report


def naive_krum_scores(rows: Matrix, f: int) -> Matrix:
    n = len(rows)
    dist = ((rows[:, None, :] - rows[None, :, :]) ** 2).sum(axis=2)
    k = n - f - 2
    return np.array([np.sort(np.delete(dist[i], i))[:k].sum() for i in range(n)])


@pytest.mark.parametrize("n", [3, 4, 9])
def test_median_matches_numpy(n: int) -> None:
    got, rows, _, _ = combined_delta(Median(), n, seed=n)
    np.testing.assert_allclose(got, np.median(rows, axis=0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("n", "beta"), [(5, 0.0), (10, 0.1), (10, 0.25), (7, 0.49)])
def test_trimmed_mean_matches_sort_and_trim(n: int, beta: float) -> None:
    got, rows, _, _ = combined_delta(TrimmedMean(beta), n, seed=n)
    k = math.floor(beta * n)
    want = np.sort(rows, axis=0)[k : n - k].mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [3, 5, 8, 12])
def test_krum_picks_the_lowest_naive_score(n: int) -> None:
    got, rows, _, report = combined_delta(Krum(0.25), n, seed=n)
    f = min(math.floor(0.25 * n), (n - 3) // 2)
    best = int(np.argmin(naive_krum_scores(rows, f)))
    np.testing.assert_allclose(got, rows[best], rtol=1e-6, atol=1e-6)
    assert report.byzantine == f
    assert report.selected == (f"learner-{best:03d}",)
    assert report.shares[f"learner-{best:03d}"] == 1.0


@pytest.mark.parametrize(("n", "m"), [(6, None), (10, 3), (10, 50)])
def test_multikrum_averages_the_m_best_with_weights(n: int, m: int | None) -> None:
    got, rows, weights, report = combined_delta(MultiKrum(0.2, m), n, seed=n)
    f = min(math.floor(0.2 * n), (n - 3) // 2)
    keep = min(n - f if m is None else m, n)
    chosen = np.sort(np.argsort(naive_krum_scores(rows, f), kind="stable")[:keep])
    want = np.average(rows[chosen], axis=0, weights=weights[chosen])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert report.selected == tuple(f"learner-{i:03d}" for i in chosen)


def naive_bulyan(rows: Matrix, f: int) -> Matrix:
    n = len(rows)
    theta, beta = n - 2 * f, n - 4 * f
    remaining = list(range(n))
    chosen = []
    for _ in range(theta):
        sub = rows[remaining]
        if len(remaining) - f - 2 > 0:
            scores = naive_krum_scores(sub, f)
        else:  # no neighbours to score by: every score is 0, the first wins
            scores = np.zeros(len(remaining))
        chosen.append(remaining.pop(int(np.argmin(scores))))
    selected = rows[sorted(chosen)]
    median = np.median(selected, axis=0)
    order = np.argsort(np.abs(selected - median), axis=0, kind="stable")[:beta]
    return np.take_along_axis(selected, order, axis=0).mean(axis=0)


@pytest.mark.parametrize(("n", "fraction"), [(7, 0.2), (11, 0.2), (15, 0.3), (4, 0.2)])
def test_bulyan_matches_the_paper_recipe(n: int, fraction: float) -> None:
    got, rows, _, report = combined_delta(Bulyan(fraction), n, seed=n)
    f = min(math.floor(fraction * n), (n - 3) // 4)
    np.testing.assert_allclose(got, naive_bulyan(rows, f), rtol=1e-5, atol=1e-6)
    assert report.byzantine == f
    assert report.selected is not None and len(report.selected) == n - 2 * f


def test_bulyan_keeps_the_values_closest_to_the_median_with_duplicates() -> None:
    # n = 7, f = 1: θ = 5 selected (the five honest ones; the outliers come last in
    # canonical order), β = 3 averaged. Sorted honest values 1, 1, 3, 4, 9 with median 3:
    # the three closest are 3, 4 and one 1 (not both 1s, which are as far as each other).
    reference = [np.zeros(1, np.float32)]
    values = {"a": 1.0, "b": 1.0, "c": 3.0, "d": 4.0, "e": 9.0, "z1": 1000.0, "z2": -1000.0}
    cohort = [(k, [np.array([v], np.float32)], 1) for k, v in values.items()]
    agg = RuleAggregator(Bulyan(0.2))
    result = fold(agg, reference, cohort)
    assert agg.last_report.selected == ("a", "b", "c", "d", "e")
    np.testing.assert_allclose(result[0], [8.0 / 3.0], rtol=1e-6)


def naive_weiszfeld(rows: Matrix, weights: Matrix, iters: int = 500) -> Matrix:
    p = weights / weights.sum()
    z = p @ rows
    for _ in range(iters):
        alpha = p / np.maximum(1e-6, np.linalg.norm(rows - z, axis=1))
        z = (alpha / alpha.sum()) @ rows
    return z


@pytest.mark.parametrize("n", [3, 6, 10])
def test_rfa_matches_a_converged_weiszfeld(n: int) -> None:
    rule = GeometricMedian(max_iter=500, tol=1e-12)
    got, rows, weights, report = combined_delta(rule, n, seed=n)
    np.testing.assert_allclose(got, naive_weiszfeld(rows, weights), rtol=1e-4, atol=1e-5)
    assert sum(report.shares.values()) == pytest.approx(1.0)
    assert 1 <= rule.iterations <= 500


def test_rfa_stops_early_at_tol_and_at_max_iter() -> None:
    loose = GeometricMedian(max_iter=100, tol=1e-2)
    combined_delta(loose, 8, seed=1)
    assert loose.iterations < 100
    capped = GeometricMedian(max_iter=2, tol=1e-15)
    combined_delta(capped, 8, seed=1)
    assert capped.iterations == 2


def test_rfa_of_identical_updates_is_that_update() -> None:
    reference = [np.zeros(4, np.float32)]
    cohort = [(f"l{i}", [np.arange(4, dtype=np.float32)], 1) for i in range(3)]
    result = fold(RuleAggregator(GeometricMedian()), reference, cohort)
    np.testing.assert_array_equal(result[0], np.arange(4, dtype=np.float32))


@pytest.mark.parametrize(
    "rule",
    [Mean(), Median(), TrimmedMean(0.2), Krum(0.2), MultiKrum(0.2), Bulyan(0.2), GeometricMedian()],
    ids=lambda r: r.name,
)
def test_chunk_size_does_not_change_the_result(rule: AggregationRule) -> None:
    results = [combined_delta(rule, 11, seed=7, chunk=c)[0] for c in (1, 4, 17, 10_000)]
    for other in results[1:]:
        # Coordinate-wise rules are exact; sums over chunks (Gram, distances) may differ
        # in the last bits.
        np.testing.assert_allclose(other, results[0], rtol=1e-6, atol=1e-7)


def test_unweighted_rules_ignore_claimed_weights() -> None:
    reference = [np.zeros(3, np.float32)]
    cohort = [
        ("a", [np.full(3, 1.0, np.float32)], 1),
        ("b", [np.full(3, 2.0, np.float32)], 1),
        ("c", [np.full(3, 9.0, np.float32)], 1_000_000),
    ]
    np.testing.assert_array_equal(fold(RuleAggregator(Median()), reference, cohort)[0], 2.0)
    weighted = fold(RuleAggregator(Mean()), reference, cohort)[0]
    assert float(weighted[0]) > 8.9


def test_zero_total_weight_is_a_clear_error() -> None:
    reference = [np.zeros(2, np.float32)]
    cohort = [("a", [np.ones(2, np.float32)], 0), ("b", [np.ones(2, np.float32)], 0)]
    with pytest.raises(ValueError, match="weights of the 2 updates sum to 0"):
        fold(RuleAggregator(Mean()), reference, cohort)
    # ...while unweighted rules do not care.
    np.testing.assert_array_equal(fold(RuleAggregator(Median()), reference, cohort)[0], 1.0)


@pytest.mark.parametrize(
    ("n", "fraction", "per_f", "want"),
    [(3, 0.4, 2, 0), (5, 0.2, 2, 1), (10, 0.45, 2, 3), (100, 0.2, 2, 20), (7, 0.4, 4, 1),
     (100, 0.3, 4, 24), (6, 0.2, 4, 0)],
)  # fmt: skip
def test_byzantine_count_is_capped_by_what_the_rule_tolerates(
    n: int, fraction: float, per_f: int, want: int
) -> None:
    f = byzantine_count(n, fraction, rule="r", per_f=per_f)
    assert f == want
    assert n >= per_f * f + 3


def test_constructor_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match=r"trim_fraction=0\.5"):
        TrimmedMean(0.5)
    with pytest.raises(ValueError, match=r"byzantine_fraction=-0\.1"):
        Krum(-0.1)
    with pytest.raises(ValueError, match="multikrum_m=0"):
        MultiKrum(0.2, 0)
    with pytest.raises(ValueError, match="rfa_max_iter=0"):
        GeometricMedian(max_iter=0)


def test_registry_holds_every_builtin_rule_and_builds_from_spec() -> None:
    assert set(AGGREGATION_RULES) == set(BUILTIN_RULES)
    spec = AggregationSpec(
        rule="multikrum", byzantine_fraction=0.3, multikrum_m=4, trim_fraction=0.2
    )
    rule = build_rule(spec)
    assert isinstance(rule, MultiKrum) and rule.m == 4 and rule.byzantine_fraction == 0.3
    trimmed = build_rule(spec.model_copy(update={"rule": "trimmed_mean"}))
    assert isinstance(trimmed, TrimmedMean) and trimmed.trim_fraction == 0.2
    rfa = build_rule(AggregationSpec(rule="rfa", rfa_max_iter=3, rfa_tol=1e-3))
    assert isinstance(rfa, GeometricMedian) and (rfa.max_iter, rfa.tol) == (3, 1e-3)


def test_a_user_rule_is_loaded_from_package_module_class(tmp_path: Path) -> None:
    (tmp_path / "my_agg_rules.py").write_text(
        textwrap.dedent(
            """
            from fedpilot.aggregation import AggregationRule, RuleOutcome

            class FirstRow(AggregationRule):
                def combine(self, rows, out):
                    for cols, block in rows.chunks([0]):
                        out[cols] = block[0]
                    return RuleOutcome()

            NotARule = object
            """
        )
    )
    rule = build_rule(AggregationSpec(rule="my_agg_rules:FirstRow"), base_dir=tmp_path)
    reference = [np.zeros(3, np.float32)]
    cohort = [("b", [np.full(3, 2.0, np.float32)], 1), ("a", [np.ones(3, np.float32)], 1)]
    np.testing.assert_array_equal(fold(RuleAggregator(rule), reference, cohort)[0], 1.0)
    with pytest.raises(SpecError, match=r"subclass of fedpilot\.aggregation\.AggregationRule"):
        build_rule(AggregationSpec(rule="my_agg_rules:NotARule"), base_dir=tmp_path)
    with pytest.raises(SpecError, match=r"aggregation\.rule"):
        build_rule(AggregationSpec(rule="no_such_module_xyz:Rule"))
