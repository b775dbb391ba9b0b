"""The server half's exchanges of secure aggregation, one :class:`Phase` each: keys,
shares (before training) and unmasking (after)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedpilot.orchestrator.phases import Phase
from fedpilot.secagg.graph import (
    as_bytes,
    default_degree,
    from_bytes,
    neighbour_graph,
    pack,
    unpack,
)
from fedpilot.secagg.transform import SecureAggregation
from fedpilot.transforms import Exchange
from fedpilot.types import LearnerId, RoundContext


class _Step(Phase):
    def __init__(self, owner: SecureAggregation) -> None:
        self.owner = owner

    def _config(self, learner: LearnerId) -> dict[str, Any]:
        return {"secagg.you": learner, "secagg.session": self.owner.round_state().session}


class KeysPhase(_Step):
    kind = "query.secagg_keys"

    def requests(self, *, cohort: Any, ctx: RoundContext) -> dict[LearnerId, Exchange]:
        return {u: Exchange(config=self._config(u)) for u in cohort}

    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        keys = reply.arrays.get("keys") or []
        if len(keys) != 2 or any(np.asarray(k).size != 32 for k in keys):
            return "secure aggregation: expected two 32-byte public keys"
        r = self.owner.round_state()
        r.c_public[learner], r.s_public[learner] = as_bytes(keys[0]), as_bytes(keys[1])
        return None


class SharesPhase(_Step):
    kind = "query.secagg_shares"

    def requests(self, *, cohort: Any, ctx: RoundContext) -> dict[LearnerId, Exchange]:
        r, owner = self.owner.round_state(), self.owner
        learners = [u for u in cohort if u in r.c_public]
        degree = owner.neighbours or default_degree(len(learners))
        r.graph = neighbour_graph(learners, degree, seed=ctx.seed, round_=ctx.round)
        out = {}
        for u in learners:
            vs = r.graph[u]
            plan = {
                "neighbours": vs,
                "c_public": {v: r.c_public[v].hex() for v in vs},
                "threshold": owner.threshold(len(vs)),
            }
            out[u] = Exchange(arrays={"plan": [pack(plan)]}, config=self._config(u))
        return out

    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        r = self.owner.round_state()
        shares = reply.arrays.get("shares") or []
        if len(shares) != len(r.graph[learner]):
            return "secure aggregation: one encrypted share per neighbour expected"
        for v, ciphertext in zip(r.graph[learner], shares, strict=True):
            r.ciphertexts[(learner, v)] = as_bytes(ciphertext)
        r.holders.add(learner)
        return None


class UnmaskPhase(_Step):
    kind = "query.secagg_unmask"
    after_training = True

    def requests(self, *, cohort: Any, ctx: RoundContext) -> dict[LearnerId, Exchange]:
        r = self.owner.round_state()
        out = {}
        for u in cohort:
            if u not in r.masked:
                continue
            senders = [v for v in r.mask_neighbours(u) if (v, u) in r.ciphertexts]
            plan = {
                "senders": senders,
                "c_public": {v: r.c_public[v].hex() for v in senders},
                "dropped": [v for v in senders if v not in r.masked],
                "survivors": [v for v in senders if v in r.masked],
            }
            out[u] = Exchange(
                arrays={
                    "plan": [pack(plan)],
                    "ciphertexts": [from_bytes(r.ciphertexts[(v, u)]) for v in senders],
                },
                config=self._config(u),
            )
        return out

    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        r = self.owner.round_state()
        arrays = reply.arrays.get("answer")
        if not arrays:
            return "secure aggregation: the unmasking reply carries no shares"
        answer = unpack(arrays[0])
        for kind in ("b", "s"):
            for v, (index, share) in answer.get(kind, {}).items():
                expected_dropped = v not in r.masked
                if (kind == "s") != expected_dropped:
                    return f"secure aggregation: learner {learner} sent the wrong share for {v}"
                r.revealed[kind].setdefault(v, []).append((int(index), bytes.fromhex(share)))
        return None
