"""Secure aggregation cost: 100 learners × 100k parameters, 10% dropping, plain vs SecAgg+.

The protocol runs without training: each learner's update is synthetic (uniform in the
clip range), and both halves of ``SecureAggregation`` run in this process through the
same calls the round and the learner make (phases' requests and takes, ``on_query``,
``on_learner``, ``take_sealed``, ``sealed_aggregate``). 10% of the learners drop after
sharing their keys and before their masked upload, so the server rebuilds their mask keys
and removes their pairwise masks (the costly recovery path).

What is measured: bytes each learner uploads over the whole round (every reply's arrays)
against a plain float32 upload; the learner side's time per exchange (learners run in
parallel, so a round waits for the slowest: the max over learners per exchange); the
server's time (phases, ring sum, unmasking); plain aggregation's time (the float mean of
the same updates). Round time without training is the aggregation path alone: its ratio
is an upper bound of the real one, whose local training adds the same time to both.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from _common import Check, Table, write_results
from fedpilot.secagg.transform import MASKED, SecureAggregation
from fedpilot.transforms import Exchange, LearnerContext, LearnerOutput, LocalWork
from fedpilot.types import RoundContext

CLIP = 0.05


def nbytes(arrays: dict[str, Any]) -> int:
    return sum(int(np.asarray(a).nbytes) for values in arrays.values() for a in values)


def run(learners: int, params: int, dropout: float, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = [f"{i:03d}" for i in range(learners)]
    model = [rng.standard_normal(params).astype(np.float32)]
    updates = {u: rng.uniform(-CLIP, CLIP, params).astype(np.float32) for u in ids}
    dropped = set(rng.choice(ids, size=round(dropout * learners), replace=False).tolist())
    ctx = RoundContext(run_id="bench", round=1, total_rounds=1, seed=seed, num_learners=learners)

    # -- plain: the float mean of the survivors' updates
    survivors = [u for u in ids if u not in dropped]
    started = time.perf_counter()
    total = np.zeros(params, np.float64)
    for u in survivors:
        total += model[0] + updates[u]
    plain_mean = total / len(survivors)
    plain_server_s = time.perf_counter() - started

    server, learner = SecureAggregation(clip=CLIP), SecureAggregation(clip=CLIP)
    uploaded = dict.fromkeys(ids, 0)
    learner_s: dict[str, list[float]] = {}
    server_s = 0.0

    def lctx(u: str, kind: str) -> LearnerContext:
        return LearnerContext(learner=u, round=1, kind=kind, config={})

    def exchange(phase: Any, cohort: Sequence[str], answering: set[str]) -> None:
        nonlocal server_s
        t = time.perf_counter()
        requests = phase.requests(cohort=cohort, ctx=ctx)
        server_s += time.perf_counter() - t
        times = learner_s.setdefault(phase.kind, [])
        for u, request in requests.items():
            if u not in answering:
                continue
            t = time.perf_counter()
            reply = learner.on_query(
                phase.kind.split(".", 1)[1],
                Exchange(arrays=dict(request.arrays), config=dict(request.config)),
                state={},
                ctx=lctx(u, phase.kind),
            )
            times.append(time.perf_counter() - t)
            uploaded[u] += nbytes(reply.arrays)
            t = time.perf_counter()
            assert phase.take(u, reply, ctx=ctx) is None
            server_s += time.perf_counter() - t

    keys, shares, unmask = server.phases(ctx=ctx)
    exchange(keys, ids, set(ids))
    exchange(shares, ids, set(ids))
    times = learner_s.setdefault("train", [])
    for i, u in enumerate(survivors):
        extras = server.train_extras(learner=u, weights=model, ctx=ctx)
        work = LocalWork("train", model, None, {"seed": i}, extras)
        t = time.perf_counter()
        out = learner.on_learner(
            work,
            lambda w, u=u: LearnerOutput([w.weights[0] + updates[u]], {}, 1),
            state={},
            ctx=lctx(u, "train"),
        )
        times.append(time.perf_counter() - t)
        uploaded[u] += nbytes(out.extras)
        t = time.perf_counter()
        assert server.take_sealed(u, out.extras, size=params) is None
        server_s += time.perf_counter() - t
    exchange(unmask, survivors, set(survivors))
    t = time.perf_counter()
    secure = server.sealed_aggregate(reference=model, ctx=ctx)
    server_s += time.perf_counter() - t

    error = float(np.max(np.abs(secure[0].astype(np.float64) - plain_mean)))
    learner_round_s = sum(max(v) for v in learner_s.values())
    plain_bytes = 4 * params
    per_learner = [uploaded[u] for u in survivors]
    return {
        "learners": learners,
        "params": params,
        "dropped": len(dropped),
        "max_abs_error": error,
        "plain_server_s": plain_server_s,
        "secure_server_s": server_s,
        "secure_learner_max_s": {k: max(v) for k, v in learner_s.items()},
        "secure_learner_median_s": {k: float(np.median(v)) for k, v in learner_s.items()},
        "secure_round_s": learner_round_s + server_s,
        "plain_round_s": plain_server_s,
        "plain_bytes_per_learner": plain_bytes,
        "secure_bytes_per_learner_max": max(per_learner),
        "secure_bytes_per_learner_mean": float(np.mean(per_learner)),
        "masked_update_bytes": int(np.asarray(out.extras[MASKED][0]).nbytes),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="secagg")
    args = parser.parse_args(argv)
    r = run(args.learners, args.params, args.dropout, args.seed)
    bytes_ratio = r["secure_bytes_per_learner_max"] / r["plain_bytes_per_learner"]
    time_ratio = r["secure_round_s"] / r["plain_round_s"]
    step = 2 * CLIP / ((2**32 - 1) // args.learners)
    table = Table(
        "Aggregation path, one round",
        ["", "plain", "SecAgg+"],
        [
            [
                "bytes uploaded per learner (max)",
                r["plain_bytes_per_learner"],
                r["secure_bytes_per_learner_max"],
            ],
            ["server time (s)", r["plain_server_s"], r["secure_server_s"]],
            [
                "slowest learner, summed over exchanges (s)",
                0.0,
                r["secure_round_s"] - r["secure_server_s"],
            ],
            ["round time without training (s)", r["plain_round_s"], r["secure_round_s"]],
        ],
    )
    checks = [
        Check("bytes uploaded per learner, secure / plain", bytes_ratio, 1.5, "<=", "×"),
        Check(
            "round time without training, secure / plain",
            time_ratio,
            2.0,
            "<=",
            "×",
            note="aggregation path only: plain has no crypto and no training here",
        ),
        Check(
            "max |secure − plain| of the new model",
            r["max_abs_error"],
            args.learners * step + 1e-6,
            "<=",
            note="quantization steps plus float32 rounding of the model",
        ),
    ]
    notes = [
        f"{r['dropped']} of {r['learners']} learners dropped after sharing, before upload.",
        f"secure aggregation adds {r['secure_round_s'] - r['plain_round_s']:.3g} s to a round: "
        "a real round stays within 2× plain whenever its plain round (training included) "
        "takes at least that long.",
        f"per-exchange learner time, max: {r['secure_learner_max_s']}",
        f"per-exchange learner time, median: {r['secure_learner_median_s']}",
    ]
    md, _ = write_results(
        args.name,
        title="Secure aggregation (SecAgg+) vs plain aggregation",
        description=(__doc__ or "").split("What is measured")[0].strip(),
        params=vars(args),
        tables=[table],
        checks=checks,
        notes=notes,
        data=r,
    )
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
