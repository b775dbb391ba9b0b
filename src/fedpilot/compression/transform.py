"""``compression``: the update transform that puts a codec on the wire.

Learner half: the update's delta (trained − received model), plus the error-feedback
residual when on, is encoded with the codec; what the codec lost becomes the new residual
(per-learner state, so it is checkpointed and survives a resume). Server half: the reply
is decoded into an ordinary update (received model + delta) before validation, so the
checks, the aggregators and the other transforms never see a codec. With ``download``
the model also travels encoded to the learners (fp16 only: see
:data:`fedpilot.spec.compression.SAFE_DOWNLOAD`), and the learner decodes it first.

It sits right inside ``sysmetrics``, so ``sys.bytes_sent`` and ``sys.bytes_received``
count the encoded payload, and so do the round's ``bytes_sent``/``bytes_received``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from fedpilot.compression.codecs import CODECS, decode_weights, encode_weights
from fedpilot.transforms._base import (
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerState, Reply, RoundContext, Weights

RESIDUAL = "residual"
"""What the codec lost so far, in the learner's state (``compression/residual``)."""
_STREAM = 0xC0DEC
"""Mixed into the learner's training seed: the stochastic rounding's own stream."""


@TRANSFORMS.register("compression")
class Compression(UpdateTransform):
    """Encodes train updates with ``codec`` on the learner, decodes them on the server."""

    name = "compression"

    def __init__(
        self,
        codec: str,
        fraction: float | None = None,
        error_feedback: bool = False,
        download: bool = False,
        base_dir: str | None = None,
    ) -> None:
        params = {} if fraction is None else {"fraction": fraction}
        self.codec = CODECS.build(
            codec,
            params,
            base_dir=None if base_dir is None else Path(base_dir),
            params_field="compression.fraction",
        )
        self.error_feedback = error_feedback
        self.download = download

    # -- learner half ---------------------------------------------------------------

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        if work.kind != "train":
            return run(work)
        if self.download:
            work.weights = [_widened(w) for w in work.weights]
        start = [np.array(w, copy=True) for w in work.weights]
        out = run(work)
        delta = [_delta(y, x) for y, x in zip(out.weights, start, strict=True)]
        residual = state.get(RESIDUAL) if self.error_feedback else None
        if residual:
            delta = [d + r if _floating(d) else d for d, r in zip(delta, residual, strict=True)]
        seed = int(work.config.get("seed", ctx.round))
        wire = encode_weights(self.codec, delta, rng=np.random.default_rng([seed, _STREAM]))
        if self.error_feedback:
            sent = decode_weights(self.codec, wire, delta)
            state[RESIDUAL] = [
                (d - s).astype(np.float32) if _floating(d) else np.zeros(0, np.float32)
                for d, s in zip(delta, sent, strict=True)
            ]
        out.weights = wire
        return out

    # -- server half ----------------------------------------------------------------

    def on_download(self, weights: Weights, *, ctx: RoundContext) -> Weights:
        del ctx
        if not self.download:
            return weights
        return [w.astype(np.float16) if _floating(w) else w for w in weights]

    def on_reply(self, reply: Reply, *, reference: Weights, ctx: RoundContext) -> Reply:
        del ctx
        if reply.kind != "train" or not reply.ok:
            return reply
        delta = decode_weights(self.codec, reply.weights, reference)
        weights = [
            (np.asarray(ref, np.float64) + np.asarray(d, np.float64)).astype(np.asarray(ref).dtype)
            if _floating(ref)
            else d
            for ref, d in zip(reference, delta, strict=True)
        ]
        return replace(reply, weights=weights)


def _plus(reference: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The learner's trained tensor: the model it was sent plus the decoded delta."""
    total = np.asarray(reference, np.float64) + np.asarray(delta, np.float64)
    return total.astype(np.asarray(reference).dtype)


def _widened(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _delta(trained: np.ndarray, start: np.ndarray) -> np.ndarray:
    if not _floating(start):
        return np.asarray(trained)  # an integer tensor goes as it is
    return (np.asarray(trained, np.float32) - np.asarray(start, np.float32)).astype(np.float32)


def _floating(array: np.ndarray) -> bool:
    return bool(np.issubdtype(np.asarray(array).dtype, np.floating))


__all__ = ["RESIDUAL", "Compression"]
