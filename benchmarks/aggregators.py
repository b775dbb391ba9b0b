"""Robust aggregators (fedpilot, disk-buffered and chunked) vs naive in-memory numpy.

What is measured
----------------
*Round time and memory at ``--updates`` × ``--params``.* For each aggregator (the
streaming weighted mean, and the buffered median, trimmed mean, Krum, Multi-Krum,
Bulyan, RFA geometric median and a quantile-clipped mean) a fresh subprocess folds one
round: ``begin``, one ``add`` per update, ``result``. Updates are generated one at a
time (untimed) and dropped after ``add``. The round's seconds are the sum of the
``add`` calls plus ``result``, best of ``--rounds`` rounds. Peak extra RSS is
``VmHWM`` (reset through ``/proc/self/clear_refs`` after setup) minus the RSS before
the first round, so it includes the one update being generated at a time.

The peer, in its own subprocess per aggregator, is the naive in-memory numpy version:
the deltas are written into one preallocated ``(n, params)`` float32 array as they
arrive (its "add"), then ``np.median`` / ``np.sort`` and trim / a full pairwise
distance matrix (Gram trick on the stacked array) / Weiszfeld on the stacked array.
Both results are saved and compared.

*Bounded memory at ``--big-params``.* The median and trimmed mean (and Krum unless
``--skip-big-krum``) fold ``--updates`` × ``--big-params`` updates the same way; the
rows take ``updates × big-params × 4`` bytes on disk and must not be held in RSS.
The naive peer is not run there (it would need the whole matrix in memory, twice for
the median's copy).

Run ``python benchmarks/aggregators.py`` (full) or ``--quick`` (a smoke run).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from _common import (
    LOG_DIR,
    Check,
    Table,
    current_rss_bytes,
    fmt,
    peak_rss_bytes,
    reset_peak_rss,
    run_worker,
    write_results,
    write_worker_result,
)

Array = npt.NDArray[np.float32]

AGGREGATORS = (
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multikrum",
    "bulyan",
    "rfa",
    "clipped_mean",
)
BIG = ("median", "trimmed_mean", "krum")
TRIM, BYZANTINE, CLIP_QUANTILE, RFA_ITER, RFA_TOL = 0.1, 0.2, 0.9, 20, 1e-6
BYZANTINE_SHARE = 0.1  # share of updates generated as outliers
BIG_RSS_LIMIT = 2e9
# One BLAS/OpenMP thread for both sides: on this shared 2-core machine OpenBLAS threads
# spinning against other load made Gram products 5-30x slower and the timings useless.
# glibc's default malloc: forcing every block > 128 KiB through mmap (as aggregation.py's
# memory probe does) doubled fedpilot's time (fresh pages per column slice) and changed
# its peak RSS by < 5%; memory the allocator keeps counts in RSS, so peaks are upper bounds.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# ------------------------------------------------------------------------ inputs


def model_shapes(params: int) -> list[tuple[int, ...]]:
    """A matrix, a bias and a remainder vector totalling exactly ``params``."""
    cols = 1000 if params >= 100_000 else 10
    rows = params // (2 * cols)
    used = rows * cols + rows
    return [(rows, cols), (rows,), (params - used,)]


def reference_model(shapes: Sequence[tuple[int, ...]], seed: int) -> list[Array]:
    rng = np.random.default_rng([seed, 2**31])
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


def make_update(
    reference: Sequence[Array], seed: int, index: int, updates: int
) -> tuple[list[Array], int]:
    """Update ``index``: honest ones move the model a little in a shared direction, the
    last ``BYZANTINE_SHARE`` of them are large random outliers."""
    rng = np.random.default_rng([seed, index])
    outlier = index >= updates - int(BYZANTINE_SHARE * updates)
    scale = 1.0 if outlier else 0.01
    arrays = []
    for r in reference:
        noise = rng.standard_normal(r.shape, dtype=np.float32)
        noise *= np.float32(scale)
        noise += r
        if not outlier:
            noise += np.float32(0.01)
        arrays.append(noise)
    return arrays, int(rng.integers(10, 1001))


# ------------------------------------------------------------------------ naive peers


def byzantine_f(n: int, per_f: int) -> int:
    return min(math.floor(BYZANTINE * n), (n - 3) // per_f)


def naive_distances(rows: Array) -> npt.NDArray[np.float64]:
    sq = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
    gram = (rows @ rows.T).astype(np.float64)
    dist = sq[:, None] + sq[None, :] - 2 * gram
    return np.maximum(dist, 0)


def naive_scores(dist: npt.NDArray[np.float64], idx: list[int], f: int) -> npt.NDArray[np.float64]:
    k = len(idx) - f - 2
    if k <= 0:
        return np.zeros(len(idx))
    sub = dist[np.ix_(idx, idx)].copy()
    np.fill_diagonal(sub, np.inf)
    return np.sort(sub, axis=1)[:, :k].sum(axis=1)


def naive(name: str, rows: Array, weights: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """The rule on the stacked ``(n, params)`` deltas, the straightforward numpy way."""
    n = len(rows)
    p = weights / weights.sum()
    if name == "mean":
        return p.astype(np.float32) @ rows
    if name == "clipped_mean":
        norms = np.linalg.norm(rows, axis=1)
        bound = np.quantile(norms, CLIP_QUANTILE)
        rows *= np.minimum(1.0, bound / np.maximum(norms, 1e-30)).astype(np.float32)[:, None]
        return p.astype(np.float32) @ rows
    if name == "median":
        return np.median(rows, axis=0)
    if name == "trimmed_mean":
        k = math.floor(TRIM * n)
        return np.sort(rows, axis=0)[k : n - k].mean(axis=0)
    if name in ("krum", "multikrum"):
        f = byzantine_f(n, 2)
        order = np.argsort(naive_scores(naive_distances(rows), list(range(n)), f), kind="stable")
        if name == "krum":
            return rows[order[0]].copy()
        chosen = np.sort(order[: n - f])
        return np.average(rows[chosen], axis=0, weights=weights[chosen])
    if name == "bulyan":
        f = byzantine_f(n, 4)
        dist = naive_distances(rows)
        remaining, chosen = list(range(n)), []
        for _ in range(n - 2 * f):
            chosen.append(remaining.pop(int(np.argmin(naive_scores(dist, remaining, f)))))
        selected = rows[sorted(chosen)]
        med = np.median(selected, axis=0)
        closest = np.argsort(np.abs(selected - med), axis=0, kind="stable")[: n - 4 * f]
        return np.take_along_axis(selected, closest, axis=0).mean(axis=0)
    if name == "rfa":
        z = p @ rows
        objective = float(p @ np.linalg.norm(rows - z, axis=1))
        for _ in range(RFA_ITER):
            alpha = p / np.maximum(1e-6, np.linalg.norm(rows - z, axis=1))
            z = (alpha / alpha.sum()) @ rows
            previous, objective = objective, float(p @ np.linalg.norm(rows - z, axis=1))
            if abs(previous - objective) <= RFA_TOL * objective:
                break
        return z
    raise ValueError(name)


# ------------------------------------------------------------------------ workers


def build_fedpilot(name: str) -> Any:
    """The aggregator a spec asking for ``name`` gets (through the public factory)."""
    from fedpilot.aggregation import build_aggregator
    from fedpilot.spec.aggregation import AggregationSpec, NormClipSpec
    from fedpilot.spec.sections import FedAvgStrategy
    from fedpilot.strategy import build_strategy

    spec = AggregationSpec(
        rule="mean" if name == "clipped_mean" else name,
        trim_fraction=TRIM,
        byzantine_fraction=BYZANTINE,
        rfa_max_iter=RFA_ITER,
        rfa_tol=RFA_TOL,
        clip=NormClipSpec(quantile=CLIP_QUANTILE) if name == "clipped_mean" else None,
    )
    # replies_in_order=False: the streaming mean then sums in float64 (order-independent).
    return build_aggregator(spec, build_strategy(FedAvgStrategy()), replies_in_order=False)


def worker(
    impl: str, name: str, updates: int, params: int, rounds: int, seed: int, save: str | None
) -> dict[str, Any]:
    """In a fresh process: ``rounds`` rounds of one aggregator; time and peak extra RSS."""
    import torch

    from fedpilot.types import RoundContext, Update

    torch.set_num_threads(1)
    shapes = model_shapes(params)
    reference = reference_model(shapes, seed)
    flat_reference = np.concatenate([r.ravel() for r in reference])
    ctx = RoundContext(run_id="bench", round=1, total_rounds=1, seed=seed)
    agg = build_fedpilot(name) if impl == "fedpilot" else None

    reset_ok = reset_peak_rss()
    rss_before = current_rss_bytes()
    samples: list[float] = []
    adds: list[float] = []
    result: npt.NDArray[Any] | None = None
    extra = {}
    for _ in range(rounds):
        spent = 0.0
        if agg is not None:
            agg.begin(reference=reference, ctx=ctx)
        else:
            rows = np.empty((updates, params), dtype=np.float32)
            weights = np.empty(updates, dtype=np.float64)
        for i in range(updates):
            arrays, count = make_update(reference, seed, i, updates)
            start = time.perf_counter()
            if agg is not None:
                agg.add(Update(f"learner-{i:04d}", arrays, count))
            else:
                np.subtract(
                    np.concatenate([a.ravel() for a in arrays]), flat_reference, out=rows[i]
                )
                weights[i] = count
            spent += time.perf_counter() - start
            del arrays
        start = time.perf_counter()
        if agg is not None:
            out = agg.result()
            result = np.concatenate([o.ravel() for o in out]) - flat_reference
        else:
            result = np.asarray(naive(name, rows, weights), dtype=np.float32)
            del rows
        spent_result = time.perf_counter() - start
        samples.append(spent + spent_result)
        adds.append(spent)
        iterations = getattr(getattr(agg, "rule", None), "iterations", None)
        if iterations is not None:
            extra["rfa_iterations"] = iterations
    peak = peak_rss_bytes()
    if agg is not None and hasattr(agg, "close"):
        agg.close()
    if save and result is not None:
        np.save(save, result)
    return {
        "impl": impl,
        "aggregator": name,
        "updates": updates,
        "params": params,
        "round_s": samples,
        "add_s": adds,
        "best_round_s": min(samples),
        "rss_extra_bytes": None if peak is None or rss_before is None else peak - rss_before,
        "rss_peak_reset": reset_ok,
        **extra,
    }


def run_one(
    impl: str, name: str, args: argparse.Namespace, params: int, save: Path | None
) -> dict[str, Any]:
    started = time.perf_counter()
    row = run_worker(
        Path(__file__),
        [
            "--_worker", impl, name, "--updates", str(args.updates), "--params", str(params),
            "--rounds", str(args.rounds), "--seed", str(args.seed),
            *(["--_save", str(save)] if save else []),
        ],
        log_path=LOG_DIR / f"aggregators-{impl}-{name}-{params}.log",
        env=WORKER_ENV,
        timeout=args.timeout,
    )  # fmt: skip
    rss = row["rss_extra_bytes"]
    print(
        f"  {impl:8s} {name:13s} {params:>11,} params: {row['best_round_s']:7.2f} s/round, "
        f"extra RSS {'?' if rss is None else f'{rss / 1e6:,.0f} MB'} "
        f"(worker {time.perf_counter() - started:.0f} s)"
    )
    return row


# ------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--params", type=int, default=1_000_000)
    p.add_argument("--big-params", type=int, default=10_000_000)
    p.add_argument("--rounds", type=int, default=2, help="rounds per worker; best is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per worker")
    p.add_argument("--only", default=",".join(AGGREGATORS), help="comma-separated aggregators")
    p.add_argument("--skip-big", action="store_true", help="no run at --big-params")
    p.add_argument("--skip-big-krum", action="store_true", help="big run: median and trim only")
    p.add_argument("--quick", action="store_true", help="smoke run: 20 x 100k, big 20 x 1M")
    p.add_argument("--name", default=None, help="results file stem")
    p.add_argument("--_worker", dest="worker", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--_save", dest="save", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_worker-result", dest="worker_result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.updates, args.params, args.big_params, args.rounds = 20, 100_000, 1_000_000, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        impl, name = args.worker
        result = worker(impl, name, args.updates, args.params, args.rounds, args.seed, args.save)
        write_worker_result(args.worker_result, result)
        return 0

    names = [n for n in args.only.split(",") if n]
    rows_bytes = args.updates * args.params * 4
    print(f"[aggregators] {args.updates} updates x {args.params:,} params, {args.rounds} rounds")
    measured: dict[str, dict[str, Any]] = {}
    agreement: dict[str, float] = {}
    differing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fedpilot-bench-agg-") as tmp:
        for name in names:
            saved = {impl: Path(tmp) / f"{impl}-{name}.npy" for impl in ("fedpilot", "naive")}
            for impl in ("fedpilot", "naive"):
                measured[f"{impl}:{name}"] = run_one(impl, name, args, args.params, saved[impl])
            ours, theirs = np.load(saved["fedpilot"]), np.load(saved["naive"])
            diff = np.abs(ours.astype(np.float64) - theirs)
            agreement[name] = float(diff.max())
            differing[name] = float(np.mean(diff > 1e-5))

    main_table = Table(
        f"One round at {args.updates} updates x {args.params:,} float32 parameters "
        f"(best of {args.rounds}; MB = 1e6 bytes)",
        ["aggregator", "fedpilot s/round", "updates/s", "fedpilot extra RSS MB",
         "naive numpy s/round", "naive extra RSS MB", "speed vs naive (x)",
         "RSS naive / fedpilot", "max |diff| vs naive", "coords differing > 1e-5"],
    )  # fmt: skip
    for name in names:
        ours, theirs = measured[f"fedpilot:{name}"], measured[f"naive:{name}"]
        o_rss, t_rss = ours["rss_extra_bytes"], theirs["rss_extra_bytes"]
        label = {"mean": "mean (streaming)", "clipped_mean": f"mean, clip q={CLIP_QUANTILE}"}
        main_table.rows.append(
            [label.get(name, name), ours["best_round_s"], args.updates / ours["best_round_s"],
             None if o_rss is None else o_rss / 1e6, theirs["best_round_s"],
             None if t_rss is None else t_rss / 1e6,
             theirs["best_round_s"] / ours["best_round_s"],
             None if not (o_rss and t_rss) else t_rss / o_rss, agreement[name],
             differing[name]]
        )  # fmt: skip
    tables = [main_table]

    big_rows: list[dict[str, Any]] = []
    big_names = [] if args.skip_big else [n for n in BIG if n != "krum" or not args.skip_big_krum]
    if big_names:
        print(f"[aggregators] bounded memory: {args.updates} x {args.big_params:,} params")
        for name in big_names:
            try:
                big_rows.append(run_one("fedpilot", name, args, args.big_params, None))
            except Exception as exc:  # a slow Krum must not lose the other rows
                print(f"  {name} failed: {exc}")
        big_table = Table(
            f"Bounded memory at {args.updates} updates x {args.big_params:,} parameters "
            f"(rows on disk: {args.updates * args.big_params * 4 / 1e9:.1f} GB)",
            ["aggregator", "s/round", "updates/s", "add s", "extra RSS MB",
             "extra RSS / rows size"],
        )  # fmt: skip
        for row in big_rows:
            rss = row["rss_extra_bytes"]
            big_table.rows.append(
                [row["aggregator"], row["best_round_s"], args.updates / row["best_round_s"],
                 min(row["add_s"]), None if rss is None else rss / 1e6,
                 None if rss is None else rss / (args.updates * args.big_params * 4)]
            )  # fmt: skip
        tables.append(big_table)

    buffered = [n for n in names if n != "mean"]
    worst_small = max(
        (measured[f"fedpilot:{n}"]["rss_extra_bytes"] or 0 for n in buffered), default=None
    )
    checks = [
        Check(
            f"largest fedpilot buffered extra RSS at {args.updates} x {args.params:,}",
            None if worst_small is None else worst_small / 1e6,
            rows_bytes / 2 / 1e6,
            "<",
            "MB",
            f"the rows take {rows_bytes / 1e6:,.0f} MB; the naive peers hold them in memory",
        )
    ]
    for row in big_rows:
        rss = row["rss_extra_bytes"]
        checks.append(
            Check(
                f"{row['aggregator']} extra RSS at {args.updates} x {args.big_params:,}",
                None if rss is None else rss / 1e6,
                BIG_RSS_LIMIT / 1e6,
                "<",
                "MB",
                f"{row['best_round_s']:.1f} s/round",
            )
        )
    for name in names:
        checks.append(
            Check(
                f"{name}: share of coordinates differing from the naive peer by > 1e-5",
                differing[name],
                1e-3,
                "<=",
                "",
                f"max |diff| {agreement[name]:.3g}; "
                + (
                    "values equally close to the median are kept differently (see notes)"
                    if name == "bulyan"
                    else "float32 results summed in other orders"
                ),
                required=False,
            )
        )

    notes = [
        f"Model: arrays {model_shapes(args.params)}; updates are the reference plus small "
        f"noise and a shared shift, except the last {BYZANTINE_SHARE:.0%} (large random "
        "outliers); example counts 10..1000.",
        f"Rules: trim_fraction={TRIM}, byzantine_fraction={BYZANTINE} (f capped at what the "
        f"rule tolerates), multikrum m = n - f, rfa max_iter={RFA_ITER} tol={RFA_TOL}, "
        f"clip quantile={CLIP_QUANTILE}; fedpilot chunk_size 262,144 (default).",
        "s/round = time in add() over all updates + result(); generating each update is not "
        "timed. updates/s = updates / s/round. The naive 'add' writes each delta into the "
        "preallocated (n, params) array.",
        "fedpilot's streaming mean is WeightedMean(order_independent=True) (float64 sums, "
        "torch, 1 thread); the buffered ones write each delta to an unnamed temporary file "
        "and read column chunks back with os.preadv.",
        "Extra RSS = peak RSS (VmHWM after a reset via /proc/self/clear_refs) minus RSS "
        "before the first round, in a fresh subprocess per (implementation, aggregator), "
        "glibc's default malloc (memory it keeps after free still counts: an upper bound); "
        "it includes the one update being generated (4 bytes x params) and the result.",
        "Bulyan: of two values equally close to the median, fedpilot keeps the smaller one "
        "(a contiguous window of the sorted values); the naive peer's stable argsort keeps "
        "the one of the earlier learner. Exact float32 ties occur in a few coordinates per "
        "million and there the two averages differ by (tie gap) / beta.",
        "Every worker runs with one BLAS/OpenMP thread (OPENBLAS_NUM_THREADS=1): on this "
        "shared 2-core machine multithreaded OpenBLAS swung between 0.4 and 15 s for the "
        "same Gram product while other jobs ran. Krum-family Gram matrices are float64 in "
        "fedpilot, float32 BLAS in the naive peers.",
        "The naive peers are not run at the big size: they need the whole matrix in memory "
        "(np.median and np.sort also copy it).",
        f"Subprocess logs: {LOG_DIR}/.",
    ]
    if any(not r["rss_peak_reset"] for r in [*measured.values(), *big_rows]):
        notes.append("Peak RSS could not be reset here: RSS figures are upper bounds.")
    if "fedpilot:rfa" in measured and "rfa_iterations" in measured["fedpilot:rfa"]:
        notes.append(f"RFA ran {measured['fedpilot:rfa']['rfa_iterations']} Weiszfeld iterations.")
    stem = args.name or ("aggregators-quick" if args.quick else "aggregators")
    md, js = write_results(
        stem,
        title="Robust aggregators: fedpilot (disk-buffered, chunked) vs naive in-memory numpy",
        description=(__doc__ or "").split("What is measured")[0].strip(),
        params={
            "updates": args.updates,
            "params": args.params,
            "big_params": args.big_params,
            "rounds": args.rounds,
            "seed": args.seed,
            "aggregators": names,
            "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
        },
        tables=tables,
        checks=checks,
        notes=notes,
        data={
            "small": measured,
            "agreement_max_abs": agreement,
            "differing_share": differing,
            "big": big_rows,
        },
    )
    print()
    for c in checks:
        tag = ("PASS" if c.passed else "FAIL") + ("" if c.required else " (info)")
        print(f"  {tag}  {c.name}: {fmt(c.value)} {c.op} {fmt(c.target)}")
    print(f"[aggregators] wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
