"""Learner-level DP's cost in accuracy: ε ∈ {1, 2, 4, 8, ∞} on MNIST-1D with many learners.

The learner-level row of the issue's ``dp_utility`` benchmark (the sample-level DP-SGD row
is ``dp_utility_sample``). 500 simulated learners (IID shards of MNIST-1D), 100 a round
drawn uniformly without replacement, distributed DP (each learner clips and adds its share
of the noise), adaptive clipping at the median. For each ε the noise multiplier is the
smallest one whose ε(δ=1e-5) after all rounds, by ``dp_accounting``'s RDP accountant
under fixed-size sampling and learner-level neighbouring, is at most ε. ε = ∞ is the same
run without DP (uniform weights as well). Accuracy is the global model's on the server's
test split, the mean over the last 5 rounds.

Run: ``python benchmarks/dp_utility_learner.py [--rounds N] [--learners N] [--cohort N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, Check, Table, write_results
from fedpilot.launch import run_federation
from fedpilot.privacy import PrivacyAccountant
from fedpilot.spec import validate_spec

DELTA = 1e-5


def noise_for(epsilon: float, *, rounds: int, learners: int, cohort: int) -> float:
    """The smallest noise multiplier (to 1%) whose ε after ``rounds`` is ≤ ``epsilon``."""

    def spent(z: float) -> float:
        accountant = PrivacyAccountant(
            noise_multiplier=z,
            population=learners,
            cohort=cohort,
            sampling="fixed_size",
            delta=DELTA,
        )
        return accountant.epsilon(rounds)

    low, high = 0.1, 50.0
    while high / low > 1.01:
        middle = (low * high) ** 0.5
        low, high = (middle, high) if spent(middle) > epsilon else (low, middle)
    return high


def run_one(epsilon: float | None, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    privacy: dict[str, Any] = {"mode": "none"}
    noise = None
    if epsilon is not None:
        noise = noise_for(epsilon, rounds=args.rounds, learners=args.learners, cohort=args.cohort)
        privacy = {
            "mode": "distributed",
            "clipping": "adaptive",
            "clip_norm": 0.5,
            "target_quantile": 0.5,
            "noise_multiplier": noise,
            # The paper's cohort/20, but at least z: the count then takes a quarter of z^-2.
            "clipped_count_stddev": max(args.cohort / 20, noise),
            "delta": DELTA,
        }
    spec = validate_spec(
        {
            "name": f"dp-learner-{epsilon or 'inf'}",
            "seed": args.seed,
            "task": {"name": "mnist1d-cnn"},
            "data": {"num_learners": args.learners, "partition": "iid", "test_fraction": 0.0},
            "rounds": args.rounds,
            "sampling": {"count": args.cohort, "min_learners": 1},
            "local": {
                "epochs": args.epochs,
                "batch_size": 8,
                "optimizer": "sgd",
                "lr": args.lr,
                "momentum": 0.9,
            },
            "weighting": {"scheme": "uniform"},
            "strategy": {"name": "fedavg", "server_lr": 1.0},
            "guard": {"enabled": False},
            "tracking": {"enabled": False},
            "privacy": privacy,
            "output_dir": str(out),
        }
    )
    started = time.perf_counter()
    result = run_federation(spec)
    seconds = time.perf_counter() - started
    curve = [float(r.metrics.get("accuracy", float("nan"))) for r in result.history]
    tail = curve[-5:]
    return {
        "epsilon": epsilon,
        "noise_multiplier": noise,
        "status": result.status,
        "accuracy": sum(tail) / len(tail),
        "curve": curve,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=80)
    parser.add_argument("--learners", type=int, default=500)
    parser.add_argument("--cohort", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--epsilons", default="1,2,4,8,inf", help="comma-separated; inf: no DP")
    args = parser.parse_args()
    epsilons = [None if e == "inf" else float(e) for e in args.epsilons.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fedpilot-dp-learner-") as out:
        for epsilon in epsilons:
            rows.append(run_one(epsilon, args, Path(out)))
            print(
                rows[-1]["epsilon"], rows[-1]["accuracy"], f"{rows[-1]['seconds']:.0f}s", flush=True
            )
    table = Table(
        "Accuracy vs ε (learner-level, distributed DP)",
        ["ε (δ=1e-5)", "noise multiplier z", "accuracy (last 5 rounds)", "seconds"],
        [
            [
                "∞" if r["epsilon"] is None else r["epsilon"],
                r["noise_multiplier"],
                r["accuracy"],
                r["seconds"],
            ]
            for r in rows
        ],
    )
    plot = _plot(rows)
    write_results(
        "dp_utility_learner",
        title="Learner-level DP: accuracy vs ε (MNIST-1D)",
        description=__doc__.split("\n\n")[1],
        params=vars(args),
        tables=[table],
        checks=[
            Check(
                "accuracy at ε=8 within 20 points of ε=∞",
                _gap(rows),
                -0.20,
                ">=",
                required=False,
            )
        ],
        notes=[
            f"Plot: {plot.name}",
            "Sampling: a fixed-size cohort drawn uniformly without replacement (what "
            "`selection: random` does); neighbouring: one learner's whole data.",
        ],
        data={"runs": rows},
    )


def _gap(rows: list[dict[str, Any]]) -> float | None:
    """Accuracy at ε = 8 minus accuracy without DP, when both ran."""
    at = {r["epsilon"]: r["accuracy"] for r in rows}
    return at[8.0] - at[None] if 8.0 in at and None in at else None


def _plot(rows: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    labels = ["∞" if r["epsilon"] is None else f"{r['epsilon']:g}" for r in rows]
    ax.plot(labels, [r["accuracy"] for r in rows], "o-")
    ax.set_xlabel("ε (δ = 1e-5)")
    ax.set_ylabel("test accuracy")
    ax.set_title("MNIST-1D, learner-level DP")
    fig.tight_layout()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "dp_utility_learner.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
