"""Client selection under heterogeneous speed and availability: simulated wall-clock
time to a target accuracy.

The digits over 50 learners with power-law data sizes; learners' compute speeds are
log-normal (sigma 1: a 10x spread is common) and each learner is online and offline in
exponential periods. 10 learners train per round and a round lasts as long as its
slowest participant. Time is the simulation's clock (simulated seconds), so the result
does not depend on this machine's load. Target: a smart selector (Oort-style or the
UCB bandit) reaches the target accuracy at least 1.3x sooner than random selection.

Run: ``python benchmarks/selection.py [--rounds 60] [--target 0.9] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Check, Table, write_results
from _runs import run_spec

SELECTORS = ("random", "available", "oort", "ucb", "power_of_choice")
SPEEDUP_TARGET = 1.3


def spec(rounds: int, seed: int, selector: str) -> dict[str, Any]:
    return {
        "name": f"selection-{selector}",
        "seed": seed,
        "task": {"name": "digits-mlp"},
        "data": {"num_learners": 50, "partition": "powerlaw(1.5)", "test_fraction": 0.0},
        "rounds": rounds,
        "sampling": {"count": 10, "min_learners": 1},
        "selection": {"name": selector},
        "local": {"epochs": 2, "batch_size": 16, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        "guard": {"enabled": False},
        "evaluation": {"central_every": 1},
        "simulation": {
            "speed": {
                "distribution": "lognormal",
                "sigma": 1.0,
                "seconds_per_example": 0.01,
                "latency": 0.5,
            },
            "availability": {"mean_on": 120.0, "mean_off": 40.0},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for selector in SELECTORS:
            started = time.perf_counter()
            _, result = run_spec(spec(args.rounds, seed, selector))
            history = result.history
            hit = next((r for r in history if r.metrics.get("accuracy", 0.0) >= args.target), None)
            runs.append(
                {
                    "seed": seed,
                    "selector": selector,
                    "time_to_target": None if hit is None else hit.virtual_time,
                    "rounds_to_target": None if hit is None else hit.round,
                    "final": result.final_metrics["accuracy"],
                    "total_time": history[-1].virtual_time,
                    "failed_updates": sum(r.failed for r in history),
                    "wall_s": time.perf_counter() - started,
                }
            )
            print(
                f"seed {seed} {selector:>15}: to target {runs[-1]['time_to_target']} "
                f"(round {runs[-1]['rounds_to_target']}), final {runs[-1]['final']:.3f}",
                flush=True,
            )

    def mean_time(selector: str) -> float | None:
        times = [r["time_to_target"] for r in runs if r["selector"] == selector]
        return None if any(t is None for t in times) else statistics.fmean(times)

    table = Table(
        f"Simulated time to {args.target} accuracy (mean over seeds {args.seeds})",
        [
            "selector",
            "time to target (sim s)",
            "speed-up vs random",
            "speed-up vs random-among-available",
            "rounds to target (mean)",
            "final accuracy (mean)",
            "failed updates (mean)",
        ],
    )
    base_random, base_available = mean_time("random"), mean_time("available")
    speedups: dict[str, tuple[float | None, float | None]] = {}
    for selector in SELECTORS:
        mine = [r for r in runs if r["selector"] == selector]
        t = mean_time(selector)
        vs_random = base_random / t if t and base_random else None
        vs_available = base_available / t if t and base_available else None
        speedups[selector] = (vs_random, vs_available)
        rounds = [r["rounds_to_target"] for r in mine if r["rounds_to_target"] is not None]
        table.rows.append(
            [
                selector,
                t,
                vs_random,
                vs_available,
                statistics.fmean(rounds) if rounds else None,
                statistics.fmean(r["final"] for r in mine),
                statistics.fmean(r["failed_updates"] for r in mine),
            ]
        )
    best_smart = max(("oort", "ucb"), key=lambda s: speedups[s][0] or 0.0)
    checks = [
        Check(
            f"best smart selector ({best_smart}) vs random",
            speedups[best_smart][0],
            SPEEDUP_TARGET,
            ">=",
            "x",
        ),
        Check(
            "oort vs random-among-available",
            speedups["oort"][1],
            SPEEDUP_TARGET,
            ">=",
            "x",
            required=False,
        ),
        Check(
            "ucb vs random-among-available",
            speedups["ucb"][1],
            SPEEDUP_TARGET,
            ">=",
            "x",
            required=False,
        ),
    ]
    every = Table(
        "Every run",
        [
            "seed",
            "selector",
            "time to target",
            "rounds to target",
            "final accuracy",
            "simulated time total",
            "failed updates",
            "wall s",
        ],
        [
            [
                r["seed"],
                r["selector"],
                r["time_to_target"],
                r["rounds_to_target"],
                r["final"],
                r["total_time"],
                r["failed_updates"],
                r["wall_s"],
            ]
            for r in runs
        ],
    )
    write_results(
        "selection",
        title="Client selection: simulated time to target accuracy",
        description=__doc__.split("\n\n")[1],
        params={
            "rounds": args.rounds,
            "target": args.target,
            "seeds": args.seeds,
            "learners": 50,
            "per_round": 10,
            "speed_sigma": 1.0,
            "availability_mean_on_off_s": [120.0, 40.0],
        },
        tables=[table, every],
        checks=checks,
        notes=[
            "random samples among all learners (as FedAvg's paper does); offline picks fail "
            "the round. 'available' samples uniformly among the learners online now, the "
            "stronger baseline; both speed-ups are reported.",
        ],
        data={"runs": runs},
    )


if __name__ == "__main__":
    main()
