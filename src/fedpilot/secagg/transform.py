"""``secure_aggregation``: SecAgg+ (Bell et al. 2020) over fedpilot's own exchanges.

Per round: ``query.secagg_keys`` (each learner advertises two X25519 public keys) →
``query.secagg_shares`` (over a sparse neighbour graph, each learner Shamir-shares its
self-mask seed and its mask-key seed, encrypted for each neighbour; the server only routes
the ciphertexts) → training (the reply carries only the quantized update plus a self mask
and pairwise masks, mod 2^bits) → ``query.secagg_unmask`` (each learner still there hands
the shares it holds: of dropped learners' mask keys, of survivors' self-mask seeds). The
server sums the masked vectors in the ring, removes the self masks and the pairwise masks
toward dropped learners, and learns only the sum of the survivors' updates; the aggregate
is the global model plus that sum over the number of survivors (an unweighted mean).
With fewer than the threshold of shares for any secret it needs, the round fails
(:class:`~fedpilot.transforms.AggregationFailed`) and keeps its model.

Trust model: an honest-but-curious server (it follows the protocol). SecAgg+'s
consistency check against a server that lies about who dropped is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedpilot.secagg import crypto
from fedpilot.secagg.graph import as_bytes, pack, unpack
from fedpilot.secagg.learner import LearnerKeys, mask_info, mask_key, reduce, self_mask
from fedpilot.secagg.quantize import dequantize_sum, quantize
from fedpilot.transforms._base import (
    AggregationFailed,
    Exchange,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.types import LearnerId, LearnerState, RoundContext, Weights, derive_rng

SETUP = "secagg/setup"
"""The train instruction's extra: who the learner is, its neighbours' mask keys."""
MASKED = "secagg/masked"
"""The training reply's only array: the masked, quantized update."""


@dataclass
class RoundState:
    """What the server half knows of the round in progress (public values only)."""

    round: int
    session: str
    c_public: dict[LearnerId, bytes] = field(default_factory=dict)
    s_public: dict[LearnerId, bytes] = field(default_factory=dict)
    graph: dict[LearnerId, list[LearnerId]] = field(default_factory=dict)
    ciphertexts: dict[tuple[LearnerId, LearnerId], bytes] = field(default_factory=dict)
    holders: set[LearnerId] = field(default_factory=set)
    masked: dict[LearnerId, npt.NDArray[np.unsignedinteger[Any]]] = field(default_factory=dict)
    revealed: dict[str, dict[LearnerId, list[crypto.Share]]] = field(
        default_factory=lambda: {"b": {}, "s": {}}
    )

    def mask_neighbours(self, learner: LearnerId) -> list[LearnerId]:
        return [v for v in self.graph.get(learner, []) if v in self.holders]


class SecureAggregation(UpdateTransform):
    """Both halves of SecAgg+; its spec is the ``secure_aggregation`` section."""

    name: ClassVar[str] = "secure_aggregation"
    actions: ClassVar[tuple[str, ...]] = ("secagg_keys", "secagg_shares", "secagg_unmask")
    seals_updates: ClassVar[bool] = True

    def __init__(
        self,
        *,
        threshold: float = 0.6,
        neighbours: int | None = None,
        bits: int = 32,
        clip: float = 1.0,
    ) -> None:
        self.threshold_fraction = threshold
        self.neighbours = neighbours
        self.bits = bits
        self.clip = clip
        self._round: RoundState | None = None

    def threshold(self, degree: int) -> int:
        """Shares needed to rebuild one learner's secret, of its ``degree`` neighbours."""
        return max(1, min(degree, int(np.ceil(self.threshold_fraction * degree))))

    # -- learner half ---------------------------------------------------------------

    def on_query(
        self, action: str, request: Exchange, *, state: LearnerState, ctx: LearnerContext
    ) -> Exchange:
        del state
        you, session = str(request.config["secagg.you"]), str(request.config["secagg.session"])
        keys = LearnerKeys(session, ctx.round, you)
        if action == "secagg_keys":
            return Exchange(arrays={"keys": keys.advertise()})
        plan = unpack(request.arrays["plan"][0])
        if action == "secagg_shares":
            neighbours = list(plan["neighbours"])
            publics = [bytes.fromhex(plan["c_public"][v]) for v in neighbours]
            shares = keys.shares_for(neighbours, publics, int(plan["threshold"]))
            return Exchange(arrays={"shares": shares})
        senders = {v: bytes.fromhex(pk) for v, pk in plan["c_public"].items()}
        ciphertexts = {
            v: as_bytes(c)
            for v, c in zip(plan["senders"], request.arrays["ciphertexts"], strict=True)
        }
        dropped = set(plan["dropped"])
        if dropped & set(plan["survivors"]):
            raise ValueError("secure aggregation: a learner cannot both drop and survive")
        return Exchange(arrays={"answer": [pack(keys.reveal(senders, ciphertexts, dropped))]})

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        del state
        setup = work.extras.get(SETUP)
        if work.kind != "train" or not setup:
            return run(work)
        plan = unpack(setup[0])
        extras = {k: v for k, v in work.extras.items() if k != SETUP}
        out = run(
            LocalWork(work.kind, work.weights, work.data, work.config, extras, work.gradient_terms)
        )
        delta = np.concatenate(
            [
                (np.asarray(a, np.float64) - np.asarray(b, np.float64)).ravel()
                for a, b in zip(out.weights, work.weights, strict=True)
            ]
        )
        rng = derive_rng(int(work.config.get("seed", 0)), ctx.round, "secagg-rounding")
        quantized = quantize(
            delta, clip=self.clip, bits=self.bits, max_summands=int(plan["summands"]), rng=rng
        )
        keys = LearnerKeys(str(plan["session"]), ctx.round, str(plan["you"]))
        s_public = {v: bytes.fromhex(pk) for v, pk in plan["s_public"].items()}
        masked = keys.mask(quantized, s_public, self.bits)  # uint32 up to 32 bits
        return LearnerOutput([], out.metrics, out.num_examples, {**out.extras, MASKED: [masked]})

    # -- server half ----------------------------------------------------------------

    def phases(self, *, ctx: RoundContext) -> list[Any]:
        # Imported here: the learner side builds this transform too and needs no
        # orchestrator.
        from fedpilot.secagg.phases import KeysPhase, SharesPhase, UnmaskPhase

        self._round = RoundState(round=ctx.round, session=ctx.run_id)
        return [KeysPhase(self), SharesPhase(self), UnmaskPhase(self)]

    def round_state(self) -> RoundState:
        if self._round is None:
            raise RuntimeError("secure aggregation: no round in progress")
        return self._round

    def train_extras(
        self, *, learner: LearnerId, weights: Weights, ctx: RoundContext
    ) -> dict[str, Weights]:
        del weights, ctx
        r = self.round_state()
        plan = {
            "you": learner,
            "session": r.session,
            "summands": len(r.holders),
            "s_public": {v: r.s_public[v].hex() for v in r.mask_neighbours(learner)},
        }
        return {SETUP: [pack(plan)]}

    def take_sealed(
        self, learner: LearnerId, extras: dict[str, Weights], *, size: int
    ) -> str | None:
        """One masked upload; a reason to refuse it, or None."""
        r = self.round_state()
        arrays = extras.get(MASKED)
        if learner not in r.holders or not arrays or len(arrays) != 1:
            return "secure aggregation: the reply carries no masked update"
        masked = np.asarray(arrays[0])
        if masked.dtype.kind != "u" or masked.shape != (size,):
            return f"secure aggregation: masked update of shape {masked.shape}, expected ({size},)"
        r.masked[learner] = masked.astype(crypto.ring_dtype(self.bits))
        return None

    def sealed_aggregate(self, *, reference: Weights, ctx: RoundContext) -> Weights:
        """The global model plus the mean of the survivors' updates.

        Raises:
            AggregationFailed: a secret needed to unmask has fewer shares than the threshold.
        """
        del ctx
        r = self.round_state()
        self._round = None
        survivors = sorted(r.masked)
        if not survivors:
            raise AggregationFailed("secure aggregation: no masked update arrived")
        size = sum(np.asarray(w).size for w in reference)
        # In place, in the ring's own word: its wrap-around is the modular arithmetic.
        total = np.zeros(size, dtype=crypto.ring_dtype(self.bits))
        for u in survivors:
            np.add(total, r.masked[u], out=total)
        for u in survivors:
            np.subtract(total, self_mask(self._rebuild(r, "b", u), size, self.bits), out=total)
        for v in sorted(r.holders - set(survivors)):
            s_key = mask_key(self._rebuild(r, "s", v))
            if crypto.public_bytes(s_key) != r.s_public[v]:  # an altered share was among them
                raise AggregationFailed(
                    f"secure aggregation: the rebuilt mask key of {v} is not the one it "
                    "advertised (a share was altered); the round reveals nothing more"
                )
            for u in r.mask_neighbours(v):
                if u not in r.masked:
                    continue
                words = crypto.mask_words(
                    crypto.agree(s_key, r.s_public[u], mask_info(r.session, r.round, u, v)),
                    size,
                    self.bits,
                )
                # u added +words when u < v: take back exactly what u put in.
                (np.subtract if u < v else np.add)(total, words, out=total)
        total = reduce(total, self.bits)
        mean = dequantize_sum(
            total, count=len(survivors), clip=self.clip, bits=self.bits, max_summands=len(r.holders)
        ) / len(survivors)
        out, at = [], 0
        for w in reference:
            step = mean[at : at + w.size].reshape(w.shape)
            out.append((np.asarray(w, np.float64) + step).astype(w.dtype))
            at += w.size
        return out

    def _rebuild(self, r: RoundState, kind: str, learner: LearnerId) -> bytes:
        shares = r.revealed[kind].get(learner, [])
        need = self.threshold(len(r.graph.get(learner, [])))
        if len(shares) < need:
            what = "self-mask seed of survivor" if kind == "b" else "mask key of dropped learner"
            raise AggregationFailed(
                f"secure aggregation: {len(shares)} shares of the {what} {learner}, "
                f"fewer than the threshold {need}; the round reveals nothing and keeps its model"
            )
        try:
            return crypto.combine(shares, need)
        except ValueError as exc:  # a share altered by a hostile learner: fail, reveal nothing
            raise AggregationFailed(f"secure aggregation: {exc} ({learner})") from exc
