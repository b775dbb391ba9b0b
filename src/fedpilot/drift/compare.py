"""The server's drift tests on summaries and on metric series.

- Labels: the Jensen–Shannon distance (base 2, in [0, 1]) between label histograms.
- Features: each feature's distribution is known only by its quantile sketch; its CDF is
  read from the sketch piecewise linearly (right-continuous where quantiles tie, as on
  discrete pixels; each tail spreads over the width of the quantile gap next to it).
  ``psi``: the population stability index over the reference's quantile bins; ``ks``:
  the Kolmogorov–Smirnov statistic, the largest gap between the two CDFs. A summary's
  score is its most shifted feature's (PSI bins narrower than 0.1 std are merged).
- The federation: the learners' latest summaries pooled into a robust consensus
  (medians per class share, per feature statistic and quantile level).
- Model trend: Mann–Kendall (Kendall's tau of the metric against time, one-sided) with
  the Theil–Sen slope for the size of the decline (scipy).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import kendalltau, theilslopes

from fedpilot.drift.summary import DataSummary, Floats

_MIN_BIN = 0.1
"""The PSI's narrowest bin, in reference standard deviations."""


def label_distance(reference: DataSummary, current: DataSummary) -> float | None:
    """The Jensen–Shannon distance of the label histograms; None without labels."""
    p, q = reference.labels, current.labels
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    size = max(p.size, q.size)
    p, q = np.pad(p, (0, size - p.size)), np.pad(q, (0, size - q.size))
    return float(np.nan_to_num(jensenshannon(p, q, base=2)))


def feature_shift(
    reference: DataSummary, current: DataSummary, test: Literal["psi", "ks"]
) -> tuple[float, str] | None:
    """The largest feature score and that feature's name; None if the two summaries do
    not describe the same features."""
    if reference.features != current.features or not reference.features:
        return None
    if not np.array_equal(reference.levels, current.levels):
        return None
    scores = (psi if test == "psi" else ks)(reference, current)
    worst = int(np.argmax(scores))
    return float(scores[worst]), reference.features[worst]


def knots(s: DataSummary) -> tuple[Floats, Floats]:
    """Every feature's CDF knots from its sketch (one row each): values and cumulative
    shares. Each tail beyond the outer quantiles spreads over the width of the next
    quantile gap (the sketch says nothing more of it): a point mass where the data pile
    up at their edge (a pixel that is mostly 0), a continuation where they thin out."""
    q = s.quantiles
    lo = q[:, :1] - (q[:, 1:2] - q[:, :1])
    # The upper tail starts just above the last quantile: (q_k, q_k+1] holds its share.
    tiny = np.maximum(np.abs(q[:, -1:]), 1.0) * 1e-9
    top = q[:, -1:] + np.maximum(q[:, -1:] - q[:, -2:-1], tiny)
    shares = np.concatenate([[0.0], s.levels, [1.0]])
    return np.hstack([lo, q, top]), np.broadcast_to(shares, (q.shape[0], shares.size))


def cdf(xs: Floats, ps: Floats, at: Floats, *, left: bool = False) -> Floats:
    """Row by row, the piecewise-linear CDF through knots ``(xs, ps)`` at ``at``:
    right-continuous (``F(x)``), or its left limits (``F(x-)``) with ``left``."""
    below = xs[:, None, :] < at[:, :, None] if left else xs[:, None, :] <= at[:, :, None]
    i = below.sum(axis=2)
    size = xs.shape[1]
    j = np.clip(i, 1, size - 1)
    x0, x1 = np.take_along_axis(xs, j - 1, 1), np.take_along_axis(xs, j, 1)
    p0, p1 = np.take_along_axis(ps, j - 1, 1), np.take_along_axis(ps, j, 1)
    width = np.where(x1 > x0, x1 - x0, 1.0)
    linear = np.where(x1 > x0, p0 + (p1 - p0) * np.clip((at - x0) / width, 0.0, 1.0), p1)
    inside = (i > 0) & (i < size)
    out: Floats = np.where(inside, linear, np.where(i >= size, 1.0, 0.0))
    return out


def psi(reference: DataSummary, current: DataSummary) -> Floats:
    """Each feature's population stability index over the reference's quantile bins,
    a bin narrower than ``_MIN_BIN`` reference stds merged with the next: such a bin
    is the sketch's rounding (a quantile just off a point mass), not a place."""
    edges = reference.quantiles
    kept = np.ones(edges.shape, dtype=bool)
    last = edges[:, 0].copy()
    for c in range(1, edges.shape[1]):
        kept[:, c] = (edges[:, c] > last) & (edges[:, c] - last >= _MIN_BIN * reference.stds)
        last = np.where(kept[:, c], edges[:, c], last)
    bins = np.hstack([np.ones((edges.shape[0], 1), bool), kept[:, 1:], np.ones_like(kept[:, :1])])

    def shares(summary: DataSummary) -> Floats:
        at = cdf(*knots(summary), edges)
        for c in range(1, at.shape[1]):  # a merged edge adds its bin to the next one
            at[:, c] = np.where(kept[:, c], at[:, c], at[:, c - 1])
        cumulative = np.hstack([np.zeros_like(at[:, :1]), at, np.ones_like(at[:, :1])])
        mass = np.clip(np.diff(cumulative, axis=1), 0.0, None)
        # Half an example more in each bin: an empty bin of a small sample is no
        # evidence of an impossible value (and would make the PSI infinite).
        n = max(summary.count, 1.0)
        smoothed: Floats = (mass * n + 0.5) / (n + 0.5 * bins.sum(axis=1, keepdims=True))
        return smoothed

    expected, actual = shares(reference), shares(current)
    terms = (actual - expected) * np.log(actual / expected)
    out: Floats = np.where(bins, terms, 0.0).sum(axis=1)
    return out


def ks(reference: DataSummary, current: DataSummary) -> Floats:
    """Each feature's largest gap between the two sketches' CDFs (the Kolmogorov–Smirnov
    statistic), looked at on both sides of every knot: the CDFs are linear between knots
    and may step on one."""
    ref, cur = knots(reference), knots(current)
    grid = np.hstack([ref[0], cur[0]])
    gaps = [
        np.abs(cdf(*ref, grid, left=side) - cdf(*cur, grid, left=side)) for side in (False, True)
    ]
    out: Floats = np.max(np.hstack(gaps), axis=1)
    return out


def pooled(members: Sequence[DataSummary]) -> DataSummary | None:
    """The federation's consensus of ``members`` (None without members): per class the
    median share, per feature the median mean, std and quantile at each level (a median
    of quantile functions is one). A median, not the mixture: a minority of drifted
    learners does not move it, so they do not make every other learner look drifted.
    Its features are those most members describe (the first such on a tie): members that
    describe others add their labels only."""
    if not members:
        return None
    shapes = Counter((m.features, m.levels.tobytes()) for m in members)
    ((shape, _),) = shapes.most_common(1)  # the first seen among equals
    same = [m for m in members if (m.features, m.levels.tobytes()) == shape]
    first = same[0]
    size = max(m.labels.size for m in members)
    shares = [
        np.pad(m.labels, (0, size - m.labels.size)) / max(m.labels.sum(), 1e-12) for m in members
    ]
    labels = np.median(shares, axis=0) if size else np.zeros(0)
    total = float(sum(m.count for m in same))
    if labels.sum() > 0:
        labels = labels / labels.sum() * total
    stats = np.median([m.stats for m in same], axis=0)
    stats[:, 2:] = np.sort(stats[:, 2:], axis=1)
    return DataSummary(total, labels, first.features, first.levels, stats)


def worsening_trend(values: Sequence[float], *, higher_is_better: bool) -> tuple[float, float]:
    """Mann–Kendall on ``values`` (one per round, oldest first): the one-sided p-value of a
    worsening trend, and how much worse it got over the series (Theil–Sen slope × span;
    positive: worse). A flat series gives p = 1."""
    y = np.asarray(values, dtype=np.float64)
    if y.size < 3 or np.ptp(y) == 0:
        return 1.0, 0.0
    t = np.arange(y.size, dtype=np.float64)
    alternative = "less" if higher_is_better else "greater"
    p = float(kendalltau(t, y, alternative=alternative).pvalue)
    slope = float(theilslopes(y, t).slope) * (y.size - 1)
    return (1.0 if np.isnan(p) else p), (-slope if higher_is_better else slope)
