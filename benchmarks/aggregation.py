"""Streaming weighted mean (fedpilot) vs Flower's ``aggregate_arrayrecords``.

What is measured
----------------
*Throughput.* ``--updates`` model updates of ``--params`` float32 parameters (spread over
the arrays of a small MLP) are generated once, with per-update example counts. Flower
gets them the way a Flower strategy sees its replies: a list of ``RecordDict``s, each
with an ``ArrayRecord`` ``"arrays"`` and a ``MetricRecord`` ``"metrics"`` holding
``"num-examples"``; only the call ``aggregate_arrayrecords(records, "num-examples")`` is
timed. fedpilot gets ``Update`` objects holding plain numpy arrays; ``begin`` + one
``add`` per update + ``result`` is timed. Runs alternate Flower/fedpilot ``--repeats``
times after one untimed warm-up each; throughput uses the median. Throughput is
reported as updates/s and as GB/s of parameters folded (updates x params x 4 bytes).

*Agreement.* Both results are compared once (``numpy.allclose``) and against a float64
reference weighted mean.

*Peak extra memory.* For each N in ``--mem-updates``, a fresh subprocess folds N updates
that are generated one at a time. fedpilot adds each to the fold and drops it; Flower's
API takes a list, so the caller must build the whole list of ``RecordDict``s first, as a
strategy holding its replies does. Two probes, each around the fold (inputs' generation
included, the reference model excluded): the peak of ``tracemalloc`` (numpy reports its
buffers to it) above the traced memory before, and the
peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) above the RSS before.

Run ``python benchmarks/aggregation.py`` (full) or ``--quick`` (a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import sys
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from _common import (
    LOG_DIR,
    Check,
    Table,
    Timing,
    current_rss_bytes,
    fmt,
    peak_rss_bytes,
    reset_peak_rss,
    run_worker,
    time_once,
    write_results,
    write_worker_result,
)
from fedpilot.aggregation import WeightedMean
from fedpilot.types import RoundContext, Update

Array = npt.NDArray[np.generic]  # float32 here; fedpilot's Weights element type
IMPLS = ("fedpilot", "flower")
WEIGHT_KEY = "num-examples"
THROUGHPUT_TARGET = 3.0
# fedpilot's peak may not grow by more than this share of one update's size from the
# smallest to the largest N: a fold holds O(model) state, however many updates arrive.
MEMORY_GROWTH_LIMIT = 0.5

# ------------------------------------------------------------------------ inputs


def model_shapes(total: int) -> list[tuple[int, ...]]:
    """Shapes of a 784-h-h/4-10 MLP plus a 1-D scale vector, totalling exactly ``total``.

    ``h`` is the largest width whose layers fit in ``total``; the remainder goes into the
    scale vector (think of a norm layer), so the parameter count is exact.
    """
    # 784h + h + h*h/4 + h/4 + 10h/4 + 10 <= total, with h a multiple of 4.
    a, b, c = 0.25, 784 + 1 + 0.25 + 2.5, 10.0 - total
    h = int((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)) // 4 * 4
    h = max(h, 4)
    q = h // 4
    shapes: list[tuple[int, ...]] = [(h, 784), (h,), (q, h), (q,), (10, q), (10,)]
    used = sum(math.prod(s) for s in shapes)
    if used > total:
        raise ValueError(f"--params must be at least {used}, got {total}")
    if total - used:
        shapes.append((total - used,))
    return shapes


def make_weights(shapes: Sequence[tuple[int, ...]], seed: int, index: int) -> list[Array]:
    """Update ``index``'s arrays: standard normal float32, reproducible from (seed, index)."""
    rng = np.random.default_rng([seed, index])
    weights: list[Array] = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    return weights


def num_examples(seed: int, index: int) -> int:
    """Update ``index``'s example count, 10..1000 (varied so the weighting matters)."""
    return int(np.random.default_rng([seed, index, 1]).integers(10, 1001))


def to_flower(weights: list[Array], n: int) -> RecordDict:
    """A training reply as a Flower strategy receives it."""
    return RecordDict({"arrays": ArrayRecord(weights), "metrics": MetricRecord({WEIGHT_KEY: n})})


def to_update(index: int, weights: list[Array], n: int) -> Update:
    return Update(learner=str(index), weights=weights, num_examples=n)


# The reference (current global) model gets an index no update uses.
REFERENCE_INDEX = 2**31

CTX = RoundContext(run_id="bench", round=1, total_rounds=1, seed=0)

# ------------------------------------------------------------------------ the two folds


def fold_fedpilot(reference: list[Array], updates: Iterator[Update]) -> list[Array]:
    """fedpilot's streaming fold over ``updates`` (consumed one at a time)."""
    agg = WeightedMean()
    agg.begin(reference=list(reference), ctx=CTX)
    for update in updates:
        agg.add(update)
    return [np.asarray(a) for a in agg.result()]


def fold_flower(records: list[RecordDict]) -> ArrayRecord:
    """Flower's weighted mean over a list of replies (what a FedAvg strategy calls)."""
    return aggregate_arrayrecords(records, WEIGHT_KEY)


def flower_arrays(result: ArrayRecord) -> list[Array]:
    """Flower's result as numpy arrays (done outside the timed region)."""
    return [np.asarray(a) for a in result.to_numpy_ndarrays()]


# ------------------------------------------------------------------------ throughput


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with the BLAS libraries' thread count at ``n`` (0: leave it)."""
    if n <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def measure_throughput(
    shapes: list[tuple[int, ...]], updates: int, repeats: int, seed: int, threads: int
) -> dict[str, Any]:
    print(f"  generating {updates} updates of {sum(math.prod(s) for s in shapes):,} params ...")
    weights = [make_weights(shapes, seed, i) for i in range(updates)]
    counts = [num_examples(seed, i) for i in range(updates)]
    fp_inputs = [to_update(i, w, n) for i, (w, n) in enumerate(zip(weights, counts, strict=True))]
    fl_inputs = [to_flower(w, n) for w, n in zip(weights, counts, strict=True)]
    reference = make_weights(shapes, seed, REFERENCE_INDEX)

    def run_fp() -> list[Array]:
        with blas_threads(threads):
            return fold_fedpilot(reference, iter(fp_inputs))

    def run_fp_default() -> list[Array]:
        return fold_fedpilot(reference, iter(fp_inputs))

    def run_fl() -> ArrayRecord:
        return fold_flower(fl_inputs)

    variants: dict[str, Callable[[], object]] = {
        "flower": run_fl,
        "fedpilot": run_fp,
        "fedpilot_default_threads": run_fp_default,
    }
    # Warm-up (page faults, lazy imports), then rotate the order every repeat so drift
    # on this shared machine hits every variant alike.
    fp_result, fl_result = run_fp(), flower_arrays(run_fl())
    run_fp_default()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, _ = time_once(variants[name])
            times[name].append(seconds)
        print(
            f"  repeat {r + 1}/{repeats}: flower {times['flower'][-1]:.3f} s, fedpilot "
            f"{times['fedpilot'][-1]:.3f} s, fedpilot (BLAS default threads) "
            f"{times['fedpilot_default_threads'][-1]:.3f} s"
        )

    # float64 reference weighted mean
    total = float(sum(counts))
    ref64 = [np.zeros(s, dtype=np.float64) for s in shapes]
    for w, n in zip(weights, counts, strict=True):
        for acc, a in zip(ref64, w, strict=True):
            acc += a.astype(np.float64) * (n / total)

    def max_abs(x: list[Array], y: list[Any]) -> float:
        return max(
            float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(x, y, strict=True)
        )

    shapes_match = [a.shape for a in fp_result] == [a.shape for a in fl_result]
    allclose = shapes_match and all(
        np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(fp_result, fl_result, strict=True)
    )
    return {
        **{name: Timing(tuple(t)).as_dict() for name, t in times.items()},
        "allclose": bool(allclose),
        "max_abs_diff_fedpilot_vs_flower": max_abs(fp_result, fl_result) if shapes_match else None,
        "max_abs_err_vs_float64": {
            "fedpilot": max_abs(fp_result, ref64),
            "flower": max_abs(fl_result, ref64),
        },
        "result_dtypes": {"fedpilot": str(fp_result[0].dtype), "flower": str(fl_result[0].dtype)},
    }


# ------------------------------------------------------------------------ memory (worker)


def memory_worker(impl: str, n: int, params: int, seed: int) -> dict[str, Any]:
    """In a fresh process: peak extra memory of folding ``n`` on-the-fly updates."""
    shapes = model_shapes(params)
    reference = make_weights(shapes, seed, REFERENCE_INDEX)

    def stream(count: int) -> Iterator[Update]:
        for i in range(count):
            yield to_update(i, make_weights(shapes, seed, i), num_examples(seed, i))

    def run(count: int) -> object:
        if impl == "fedpilot":
            return fold_fedpilot(reference, stream(count))
        # Flower's API takes the list; building it is what its caller must do.
        records = [
            to_flower(make_weights(shapes, seed, i), num_examples(seed, i)) for i in range(count)
        ]
        return fold_flower(records)

    # Warm-up with two updates: imports, numpy/Flower caches, allocator arenas.
    run(2)
    gc.collect()

    # Probe 1: RSS (no tracemalloc overhead in this pass).
    reset_ok = reset_peak_rss()
    rss_before = current_rss_bytes()
    result = run(n)
    rss_peak = peak_rss_bytes()
    del result
    gc.collect()

    # Probe 2: tracemalloc.
    tracemalloc.start()
    traced_before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    result = run(n)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result

    rss_extra = None
    if rss_before is not None and rss_peak is not None:
        rss_extra = max(rss_peak - rss_before, 0)
    return {
        "impl": impl,
        "updates": n,
        "tracemalloc_extra_bytes": traced_peak - traced_before,
        "rss_extra_bytes": rss_extra,
        "rss_peak_reset": reset_ok,
    }


def measure_memory(
    sizes: Sequence[int], params: int, seed: int, log_dir: Path
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        for impl in IMPLS:
            print(f"  {impl}: {n} updates (subprocess) ...")
            rows.append(
                run_worker(
                    Path(__file__),
                    ["--_mem-worker", impl, str(n), "--params", str(params), "--seed", str(seed)],
                    log_path=log_dir / f"aggregation-mem-{impl}-{n}.log",
                    # Large blocks always via mmap, so freed buffers leave RSS at once and
                    # the RSS probe sees live memory, not allocator caching.
                    env={"MALLOC_MMAP_THRESHOLD_": "131072"},
                    timeout=600,
                )
            )
    return rows


# ------------------------------------------------------------------------ main


def _default_blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(
        (int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"),
        default=1,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--updates", type=int, default=100, help="updates per throughput run")
    p.add_argument("--params", type=int, default=1_000_000, help="float32 parameters per update")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per implementation")
    p.add_argument(
        "--mem-updates", default="25,50,100", help="comma-separated update counts for memory"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for fedpilot's timed fold (0: the library's default); "
        "a run at the default is always reported too",
    )
    p.add_argument("--skip-memory", action="store_true", help="throughput and agreement only")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20 updates x 100k params, 2 repeats, memory at 5,10,20",
    )
    p.add_argument("--name", default=None, help="results file stem (default: aggregation[-quick])")
    p.add_argument("--_worker-result", dest="worker_result", help=argparse.SUPPRESS)
    p.add_argument("--_mem-worker", dest="mem_worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.updates, args.params, args.repeats, args.mem_updates = 20, 100_000, 2, "5,10,20"
    args.mem_sizes = sorted({int(x) for x in str(args.mem_updates).split(",") if x.strip()})
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mem_worker:
        impl, n = args.mem_worker
        write_worker_result(args.worker_result, memory_worker(impl, int(n), args.params, args.seed))
        return 0

    shapes = model_shapes(args.params)
    update_bytes = args.params * 4
    name = args.name or ("aggregation-quick" if args.quick else "aggregation")
    log_dir = LOG_DIR

    print(f"[aggregation] throughput: {args.updates} updates x {args.params:,} params")
    tp = measure_throughput(shapes, args.updates, args.repeats, args.seed, args.blas_threads)
    folded_gb = args.updates * update_bytes / 1e9
    fl_s = tp["flower"]["median_s"]
    ratio = fl_s / tp["fedpilot"]["median_s"]
    ratio_best = tp["flower"]["min_s"] / tp["fedpilot"]["min_s"]
    ratio_default = fl_s / tp["fedpilot_default_threads"]["median_s"]
    default_threads = _default_blas_threads()
    threads_label = f"{args.blas_threads}" if args.blas_threads else f"{default_threads}"

    throughput = Table(
        f"Throughput (median of {args.repeats} repeats)",
        ["implementation", "median s", "min s", "updates/s", "GB/s folded", "vs Flower",
         "runs s"],
    )  # fmt: skip
    for label, key in (
        (f"fedpilot WeightedMean (BLAS threads {threads_label})", "fedpilot"),
        (f"fedpilot WeightedMean (BLAS default, {default_threads} threads)",
         "fedpilot_default_threads"),
        ("Flower aggregate_arrayrecords (numpy)", "flower"),
    ):  # fmt: skip
        t = tp[key]
        throughput.rows.append(
            [label, t["median_s"], t["min_s"], args.updates / t["median_s"],
             folded_gb / t["median_s"], fl_s / t["median_s"],
             ", ".join(f"{x:.3f}" for x in t["samples_s"])]
        )  # fmt: skip
    agreement = Table(
        "Agreement",
        ["allclose (rtol 1e-5, atol 1e-6)", "max abs diff fedpilot vs Flower",
         "max err fedpilot vs float64", "max err Flower vs float64", "dtypes"],
        [[tp["allclose"], tp["max_abs_diff_fedpilot_vs_flower"],
          tp["max_abs_err_vs_float64"]["fedpilot"], tp["max_abs_err_vs_float64"]["flower"],
          f"{tp['result_dtypes']['fedpilot']} / {tp['result_dtypes']['flower']}"]],
    )  # fmt: skip
    tables = [throughput, agreement]
    checks = [
        Check(
            "fedpilot throughput / Flower throughput",
            ratio,
            THROUGHPUT_TARGET,
            ">=",
            "x",
            f"ratio of medians, fedpilot at BLAS threads {threads_label}; ratio of best "
            f"runs {ratio_best:.2f}x",
        ),
        Check(
            "fedpilot throughput / Flower throughput, BLAS default threads",
            ratio_default,
            THROUGHPUT_TARGET,
            ">=",
            "x",
            f"ratio of medians with the BLAS default of {default_threads} threads",
            required=False,
        ),
        Check("results agree (allclose)", float(tp["allclose"]), 1.0, ">=", "", "1 = yes"),
    ]

    mem_rows: list[dict[str, Any]] = []
    if not args.skip_memory:
        print(f"[aggregation] peak extra memory at N = {args.mem_sizes}")
        mem_rows = measure_memory(args.mem_sizes, args.params, args.seed, log_dir)
        memory = Table(
            "Peak extra memory of one fold vs number of updates (MB = 1e6 bytes)",
            ["implementation", "updates", "tracemalloc MB", "RSS MB", "tracemalloc / update",
             "RSS / update"],
        )  # fmt: skip
        for row in mem_rows:
            rss = row["rss_extra_bytes"]
            memory.rows.append(
                [row["impl"], row["updates"], row["tracemalloc_extra_bytes"] / 1e6,
                 None if rss is None else rss / 1e6,
                 row["tracemalloc_extra_bytes"] / update_bytes,
                 None if rss is None else rss / update_bytes]
            )  # fmt: skip
        tables.append(memory)
        lo, hi = min(args.mem_sizes), max(args.mem_sizes)

        def peak(impl: str, n: int, key: str = "tracemalloc_extra_bytes") -> float:
            return float(next(r[key] for r in mem_rows if r["impl"] == impl and r["updates"] == n))

        def growth(impl: str) -> float:
            keys = ["tracemalloc_extra_bytes"]
            if all(r["rss_extra_bytes"] is not None for r in mem_rows):
                keys.append("rss_extra_bytes")
            return float(max((peak(impl, hi, k) - peak(impl, lo, k)) / update_bytes for k in keys))

        fl_growth = growth("flower")
        checks.append(
            Check(
                f"fedpilot peak growth N={lo}->{hi} (larger of tracemalloc, RSS)",
                growth("fedpilot"),
                MEMORY_GROWTH_LIMIT,
                "<",
                "update sizes",
                f"Flower grows by {fl_growth:.1f} update sizes over the same range",
            )
        )

    notes = [
        f"Model: {len(shapes)} arrays {shapes}, {args.params:,} float32 parameters "
        f"({update_bytes / 1e6:.1f} MB per update); example counts 10..1000 per update.",
        "Throughput times only the aggregation: Flower's `aggregate_arrayrecords(records, "
        "'num-examples')` on prebuilt RecordDicts (ArrayRecord 'arrays' + MetricRecord "
        "'metrics'); fedpilot's `WeightedMean.begin/add.../result` on prebuilt `Update`s. "
        "Building the inputs is not timed. Flower's timed call includes deserializing each "
        "Array (`np.load` from bytes), which is how a Flower strategy holds replies.",
        "GB/s folded = updates x params x 4 bytes / seconds.",
        f"Runs rotate between the variants (order shifted every repeat) after one untimed "
        f"warm-up each; {args.repeats} repeats; ratios use medians.",
        "fedpilot's WeightedMean folds with BLAS axpy (scipy's, in place), so the BLAS "
        "thread count matters. The target is checked at --blas-threads "
        f"(here {threads_label}, set through threadpoolctl); the library's default (one "
        "thread per core) is measured in the same invocation and reported as (info). The "
        "fold is memory-bound, so a second thread buys little, and on this shared 2-core "
        "machine threads spinning against other load can cost far more than they give.",
        "Memory: one fresh subprocess per (implementation, N). Updates are generated one "
        "at a time; fedpilot folds and drops each, Flower's API needs the whole list "
        "first. tracemalloc = peak traced bytes during the fold minus traced bytes before "
        "it; RSS = peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS before, "
        "measured in a separate pass without tracemalloc, with "
        "MALLOC_MMAP_THRESHOLD_=131072 so freed buffers leave RSS. Both include "
        "generating the inputs and the result; the reference model is excluded.",
        f"Memory target: fedpilot's peak (the larger growth of the two probes) grows by "
        f"less than {MEMORY_GROWTH_LIMIT} update sizes between the smallest and largest N.",
        f"Subprocess logs: {log_dir}/.",
    ]
    if mem_rows and not all(r["rss_peak_reset"] for r in mem_rows):
        notes.append(
            "Peak RSS could not be reset here (/proc/self/clear_refs not writable): RSS "
            "numbers are a lower bound; rely on tracemalloc."
        )
    md, js = write_results(
        name,
        title="Aggregation: fedpilot streaming weighted mean vs Flower aggregate_arrayrecords",
        description=(__doc__ or "").split("What is measured")[0].strip(),
        params={
            "updates": args.updates,
            "params": args.params,
            "repeats": args.repeats,
            "mem_updates": args.mem_sizes,
            "seed": args.seed,
            "blas_threads": args.blas_threads or "default",
            "shapes": [list(s) for s in shapes],
        },
        tables=tables,
        checks=checks,
        notes=notes,
        data={"throughput": tp, "memory": mem_rows},
    )
    print()
    for c in checks:
        tag = ("PASS" if c.passed else "FAIL") + ("" if c.required else " (info)")
        print(f"  {tag}  {c.name}: {fmt(c.value)} {c.op} {fmt(c.target)}")
    print(f"[aggregation] wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
