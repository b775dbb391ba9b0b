"""A learner's data summary: what it tells the server about its data instead of the data.

A label histogram (integer labels), and per feature the example count, mean, standard
deviation and a quantile sketch at fixed interior levels (no minimum or maximum: an
extreme value is often one person's record). Wide inputs are summarized over at most
``max_features`` derived features, so a summary stays a few kilobytes whatever the
input: per channel for ``(N, C, ...)`` inputs with few channels, otherwise the means of
contiguous blocks of the flattened input.

On the wire a summary is three arrays (a UTF-8 JSON header, the label counts, the
feature statistics); :func:`from_arrays` refuses anything that does not fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.types import Weights

Floats = npt.NDArray[np.float64]

MAX_CLASSES = 10_000
"""Integer labels above this are summarized as a feature, not as a histogram."""
MAX_NAME = 64
"""The longest feature name a summary may carry (fedpilot's own are ``x[1023:1040]``,
``channel 2``, ``label``): a name becomes a metric label and an event field."""
MAX_COUNT = float(2**53)
"""The most examples a summary may claim (a float counts whole numbers exactly up to it;
pooled, the federation's counts stay finite)."""


@dataclass(frozen=True)
class DataSummary:
    """Label counts and per-feature statistics of one learner's data.

    ``stats`` has one row per feature: mean, std, then the quantiles at ``levels``.
    """

    count: float
    labels: Floats
    """Examples per class (index = class); empty when the labels are not classes."""
    features: tuple[str, ...]
    levels: Floats
    stats: Floats

    @property
    def means(self) -> Floats:
        return self.stats[:, 0]

    @property
    def stds(self) -> Floats:
        return self.stats[:, 1]

    @property
    def quantiles(self) -> Floats:
        return self.stats[:, 2:]

    def to_arrays(self) -> Weights:
        header = {"count": self.count, "features": list(self.features)}
        text = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        # The first row carries the quantile levels (under two unused cells).
        table = np.vstack([np.concatenate([[np.nan, np.nan], self.levels]), self.stats])
        return [text.copy(), self.labels.astype(np.float32), table.astype(np.float32)]


def levels_for(quantiles: int) -> Floats:
    """``quantiles`` evenly spaced interior levels (9: the deciles 0.1 … 0.9)."""
    return np.arange(1, quantiles + 1, dtype=np.float64) / (quantiles + 1)


def summarize(
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    *,
    max_features: int,
    quantiles: int,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> DataSummary:
    """The summary of features ``x`` (first axis: examples) and labels ``y``.

    Missing values (NaN) are left out of each feature's statistics. With ``noise`` > 0
    (and ``rng``), each label count gets N(0, noise²) and each feature
    statistic N(0, (noise·σ/√n)²), σ the feature's std: a blur, not formal DP.
    """
    matrix, names = feature_matrix(x, max_features)
    labels = np.zeros(0)
    y = np.asarray(y)
    classes = y.ndim == 1 and np.issubdtype(y.dtype, np.integer)
    if classes and (y.size == 0 or (y.min() >= 0 and y.max() < MAX_CLASSES)):
        labels = np.bincount(y, minlength=1).astype(np.float64)
    if labels.size == 0 and y.size and y.ndim == 1:  # regression targets: one more feature
        matrix = np.column_stack([matrix, y.astype(np.float64)])
        names = (*names, "label")
    levels = levels_for(quantiles)
    n = matrix.shape[0]
    if n:
        # Over the values each feature has: data with gaps (NaN) still has a summary.
        stats = np.column_stack(
            [
                np.nanmean(matrix, axis=0),
                np.nanstd(matrix, axis=0),
                np.nanquantile(matrix, levels, axis=0).T,
            ]
        )
    else:
        stats = np.zeros((matrix.shape[1], 2 + levels.size))
    if noise > 0 and rng is not None:
        labels = np.clip(labels + rng.normal(0.0, noise, labels.shape), 0.0, None)
        error = noise * stats[:, 1:2] / np.sqrt(max(n, 1))
        stats = stats + rng.normal(0.0, 1.0, stats.shape) * error
        stats[:, 1] = np.abs(stats[:, 1])
        stats[:, 2:] = np.sort(stats[:, 2:], axis=1)
    return DataSummary(float(n), labels, names, levels, stats)


def feature_matrix(x: npt.NDArray[Any], max_features: int) -> tuple[Floats, tuple[str, ...]]:
    """``x`` as an (examples × at most ``max_features``) float matrix, with names."""
    x = np.asarray(x)
    n = x.shape[0] if x.ndim else 0
    flat = x.reshape(n, -1).astype(np.float64)
    width = flat.shape[1]
    if width <= max_features:
        return flat, tuple(f"x[{i}]" for i in range(width))
    if x.ndim >= 3 and 1 < x.shape[1] <= max_features:
        channels = x.reshape(n, x.shape[1], -1).astype(np.float64).mean(axis=2)
        return channels, tuple(f"channel {c}" for c in range(x.shape[1]))
    bounds = np.linspace(0, width, max_features + 1).astype(int)
    blocks = np.add.reduceat(flat, bounds[:-1], axis=1) / np.diff(bounds)
    return blocks, tuple(f"x[{a}:{b}]" for a, b in pairwise(bounds))


def from_arrays(arrays: Weights, *, max_features: int | None = None) -> DataSummary:
    """The summary :meth:`DataSummary.to_arrays` sent.

    Args:
        arrays: What the learner sent.
        max_features: The most features a summary may describe (the run's
            ``max_features``; one more for a regression label); None: any number.

    Raises:
        ValueError: the arrays are not a summary (wrong count, shapes, values), or one
            larger than ``max_features`` and :data:`MAX_CLASSES` allow.
    """
    if len(arrays) != 3:
        raise ValueError(f"a data summary is 3 arrays, got {len(arrays)}")
    text, labels, table = (np.asarray(a) for a in arrays)
    widest = None if max_features is None else max_features + 1
    if widest is not None and (table.ndim != 2 or table.shape[0] > widest + 1):
        raise ValueError(f"a data summary's table has shape {table.shape}: at most {widest} rows")
    if labels.size > MAX_CLASSES:
        raise ValueError(f"a data summary has {labels.size} classes, at most {MAX_CLASSES}")
    try:
        header = json.loads(text.astype(np.uint8).tobytes().decode())
        count = float(header["count"])
        names = tuple(str(f) for f in header["features"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValueError(f"a data summary's header cannot be read: {exc}") from None
    table64: Floats = table.astype(np.float64)
    if table64.ndim != 2 or table64.shape[0] != len(names) + 1 or table64.shape[1] < 5:
        raise ValueError(f"a data summary's table has shape {table64.shape}")
    if any(len(name) > MAX_NAME for name in names):
        raise ValueError(f"a data summary names a feature in more than {MAX_NAME} characters")
    stats, levels = table64[1:], table64[0, 2:]
    counts: Floats = labels.astype(np.float64).reshape(-1)
    if not (np.isfinite(stats).all() and np.isfinite(counts).all() and 0 <= count <= MAX_COUNT):
        raise ValueError("a data summary holds a value that is no measurement")
    if not (np.all(np.diff(levels) > 0) and levels[0] > 0 and levels[-1] < 1):
        raise ValueError("a data summary's quantile levels are not increasing in (0, 1)")
    return DataSummary(count, np.clip(counts, 0, None), names, levels, stats)
