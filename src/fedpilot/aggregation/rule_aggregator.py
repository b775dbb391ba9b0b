"""RuleAggregator: keeps a round's updates on disk and runs a rule over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from fedpilot.aggregation._base import AggregationReport, Aggregator, check_weight
from fedpilot.aggregation.buffer import BufferRows, UpdateBuffer
from fedpilot.aggregation.clip import clip_factors, norm_bound
from fedpilot.aggregation.rules._base import AggregationRule
from fedpilot.spec.aggregation import NormClipSpec
from fedpilot.types import LearnerId, RoundContext, Update, Weights


class RuleAggregator(Aggregator):
    """Buffers each added update's delta on disk; ``result`` runs ``rule`` over them.

    Every rule that needs all of a round's updates at once (median, Krum, …), and the
    mean when updates are clipped against the cohort or may be excluded, runs here.
    Memory stays near ``n × chunk_size × 4`` bytes plus one model, whatever the model
    size: the rows live in a temporary file (deleted at the next ``begin`` or
    ``close``) and the rule reads them in column chunks.

    Before the rule runs, rows are put in canonical order (sorted by learner id), so the
    aggregate does not depend on the order updates arrived in, bit for bit. With
    ``clip``, each delta is scaled by ``min(1, bound / ‖delta‖)`` first. Integer and
    boolean arrays (counters) are not robustly aggregated: they get the weighted mean of
    the included updates, rounded.

    Args:
        rule: How the deltas are combined.
        clip: Norm bounding applied per update before the rule; None for none.
        chunk_size: Parameters per column chunk.
        workdir: Folder for the temporary file; the system's temporary folder when None.
    """

    def __init__(
        self,
        rule: AggregationRule,
        *,
        clip: NormClipSpec | None = None,
        chunk_size: int = 262_144,
        workdir: Path | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"`chunk_size` must be >= 1, got chunk_size={chunk_size}")
        self.rule = rule
        self.clip = clip
        self.chunk_size = chunk_size
        self.workdir = workdir
        self._buffer: UpdateBuffer | None = None
        self._reference: Weights = []
        self._rows: dict[LearnerId, int] = {}
        self._weights: list[float] = []
        self._norms: list[float] = []
        self._excluded: dict[LearnerId, str] = {}
        self._report = AggregationReport()

    def begin(self, *, reference: Weights, ctx: RoundContext) -> None:
        del ctx
        self.close()
        self._buffer = UpdateBuffer(reference, workdir=self.workdir)
        self._reference = list(reference)
        self._rows = {}
        self._weights = []
        self._norms = []
        self._excluded = {}
        self._report = AggregationReport()

    def add(self, update: Update) -> None:
        buffer = self._require_round()
        if update.learner in self._rows:
            raise ValueError(f"an update from {update.learner!r} was already added this round")
        weight = check_weight(update)
        norm = buffer.append(update.learner, update.weights)
        self._rows[update.learner] = buffer.rows - 1
        self._weights.append(weight)
        self._norms.append(norm)

    def exclude(self, learner: LearnerId, reason: str) -> None:
        """Leave ``learner``'s update out of ``result`` (it stays in the file, unread)."""
        if learner not in self._rows:
            raise ValueError(f"no update from {learner!r} was added this round")
        self._excluded[learner] = reason

    @property
    def count(self) -> int:
        return len(self._rows) - len(self._excluded)

    def delta_norms(self) -> dict[LearnerId, float]:
        """The L2 norm of each included update's delta (before clipping), by learner."""
        return {
            learner: self._norms[row]
            for learner, row in sorted(self._rows.items())
            if learner not in self._excluded
        }

    def result(self) -> Weights:
        buffer = self._require_round()
        included = sorted(k for k in self._rows if k not in self._excluded)
        if not included:
            raise ValueError(
                "no updates were added this round (or all were excluded); nothing to aggregate"
            )
        file_rows = [self._rows[k] for k in included]
        weights = np.array([self._weights[r] for r in file_rows], dtype=np.float64)
        factors: npt.NDArray[np.float64] | None = None
        if self.clip is not None:
            norms = np.array([self._norms[r] for r in file_rows], dtype=np.float64)
            factors = clip_factors(norms, norm_bound(norms, self.clip))
        rows = BufferRows(
            buffer,
            file_rows,
            weights,
            None if factors is None else factors.astype(np.float32),
            self.chunk_size,
        )
        delta = np.zeros(buffer.dim, dtype=np.float32)
        outcome = self.rule.combine(rows, delta)

        out: Weights = []
        discrete_at = 0
        for slot, ref in zip(buffer.slots, self._reference, strict=True):
            if slot.floating:
                work = np.promote_types(slot.dtype, np.float32)
                part = delta[slot.offset : slot.offset + slot.size].reshape(slot.shape)
                out.append(np.add(ref, part, dtype=work).astype(slot.dtype, copy=False))
            else:
                stacked = [buffer.discrete[r][discrete_at] for r in file_rows]
                out.append(_rounded_mean(stacked, weights).astype(slot.dtype, copy=False))
                discrete_at += 1

        self._report = AggregationReport(
            shares={}
            if outcome.shares is None
            else {k: float(s) for k, s in zip(included, outcome.shares, strict=True)},
            clip_factors={}
            if factors is None
            else {k: float(c) for k, c in zip(included, factors, strict=True) if c < 1},
            selected=None
            if outcome.selected is None
            else tuple(included[i] for i in outcome.selected),
            byzantine=outcome.byzantine,
            excluded=dict(sorted(self._excluded.items())),
        )
        return out

    @property
    def last_report(self) -> AggregationReport:
        return self._report

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    def _require_round(self) -> UpdateBuffer:
        if self._buffer is None:
            raise RuntimeError("call begin() before add() or result()")
        return self._buffer


def _rounded_mean(
    arrays: list[npt.NDArray[np.generic]], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The weighted mean of integer arrays, rounded; equal weights if they sum to 0."""
    total = float(weights.sum())
    w = weights / total if total > 0 else np.full_like(weights, 1.0 / len(weights))
    acc = np.zeros(arrays[0].shape, dtype=np.float64)
    for weight, array in zip(w, arrays, strict=True):
        acc += weight * np.asarray(array, dtype=np.float64)
    return np.rint(acc)
