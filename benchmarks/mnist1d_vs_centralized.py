"""Federated MNIST-1D (IID, 10 learners) vs the centralized baseline with the same total
local epochs (rounds × local.epochs), as `fedpilot run examples/mnist1d.yaml` and
`fedpilot run examples/mnist1d.yaml --centralized` do. Target: within 5 points.

Run: ``python benchmarks/mnist1d_vs_centralized.py [--seeds 0 1 2] [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Check, Table, write_results
from fedpilot.orchestrator import run_centralized, run_federation
from fedpilot.spec import load_spec

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnist1d.yaml"
TARGET_POINTS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed, a third of the rounds")
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    base = load_spec(EXAMPLE)
    rounds = max(1, base.rounds // 3) if args.quick else base.rounds

    rows: list[list[Any]] = []
    data: dict[str, Any] = {"runs": []}
    gaps = []
    with tempfile.TemporaryDirectory(prefix="fedpilot-bench-") as out:
        for seed in seeds:
            overrides = [
                f"seed={seed}",
                f"rounds={rounds}",
                "tracking.enabled=false",
                f"output_dir={out}",
            ]
            spec = load_spec(EXAMPLE, overrides)
            started = time.perf_counter()
            federated = run_federation(spec)
            fed_s = time.perf_counter() - started
            started = time.perf_counter()
            centralized = run_centralized(spec)
            cen_s = time.perf_counter() - started
            fed_acc = federated.final_metrics["accuracy"]
            cen_acc = centralized.final_metrics["accuracy"]
            gap = 100 * (cen_acc - fed_acc)
            gaps.append(gap)
            rows.append([seed, fed_acc, cen_acc, gap, fed_s, cen_s])
            data["runs"].append(
                {
                    "seed": seed,
                    "federated": [r.metrics.get("accuracy") for r in federated.history],
                    "centralized": [r.metrics.get("accuracy") for r in centralized.history],
                }
            )
            print(f"seed {seed}: federated {fed_acc:.4f} centralized {cen_acc:.4f} gap {gap:+.1f}")

    mean_gap = sum(gaps) / len(gaps)
    local = base.local
    write_results(
        "mnist1d_vs_centralized" + ("-quick" if args.quick else ""),
        title="MNIST-1D: federated (IID, 10 learners) vs centralized, same total local epochs",
        description=(
            "Final central test accuracy of FedAvg on `examples/mnist1d.yaml` and of the "
            "`--centralized` baseline trained on the pooled learners' data for "
            "rounds × local.epochs epochs with the same optimizer settings."
        ),
        params={
            "spec": "examples/mnist1d.yaml",
            "seeds": seeds,
            "rounds": rounds,
            "local": f"{local.epochs:g} epochs, batch {local.batch_size}, {local.optimizer} "
            f"lr {local.lr} momentum {local.momentum}",
            "total_epochs": rounds * local.epochs,
        },
        tables=[
            Table(
                "Final accuracy",
                ["seed", "federated", "centralized", "gap (points)", "fed s", "central s"],
                rows,
            )
        ],
        checks=[
            Check(
                "mean gap centralized - federated",
                mean_gap,
                TARGET_POINTS,
                "<=",
                unit="points",
                note=f"worst seed {max(gaps):+.1f} points",
            )
        ],
        notes=[
            "Both sides run in this process with the spec's runtime (workers 0, 1 torch "
            "thread); accuracy is on the server-held MNIST-1D test split.",
            "Learners keep no local test split (data.test_fraction: 0), so federated and "
            "centralized train on exactly the same samples.",
        ],
        data=data,
    )


if __name__ == "__main__":
    main()
