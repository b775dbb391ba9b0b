"""Federated tuning with Optuna on digits: what pruning saves, and what tuning buys.

Two studies of the same budget (the same trials of the same federation, the same seeds,
TPE sampler) over a space with a bad region: ``local.lr`` log-uniform over [0.001, 5]
(100× the example's 0.05 and more diverges under momentum), ``local.momentum`` in
[0, 0.95], ``local.epochs`` 1-3. One study prunes (Optuna's median pruner on the central
accuracy reported after every round), the other runs every trial to its end. Targets:
pruning cuts the total rounds run by at least 40% while its best accuracy is within 1
point of the unpruned study's; the best tuned configuration beats the example spec's
(examples/digits.yaml) on the central test set, both rerun from scratch with other seeds.

Run: ``python benchmarks/tuning.py [--trials 20] [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Check, Table, write_results
from _runs import merged, run_spec
from fedpilot.hpo.space import applied
from fedpilot.hpo.study import best_trials, tune
from fedpilot.spec import validate_spec

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits.yaml"
SPACE: dict[str, Any] = {
    "local.lr": {"low": 0.001, "high": 5.0, "log": True},
    "local.momentum": {"low": 0.0, "high": 0.95},
    "local.epochs": {"low": 1, "high": 3},
}
RESERVE_SEEDS = (1, 2, 3)
"""Seeds of the final comparison: other partitions and initial models than the studies'."""


def example(rounds: int) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    # The tuned metric is the central accuracy after every round; the federated
    # evaluation on the learners' splits is not needed for it.
    return merged(raw, {"rounds": rounds, "evaluation": {"central_every": 1, "federated_every": 0}})


def study(raw: dict[str, Any], *, pruner: str, trials: int, out: Path) -> dict[str, Any]:
    spec = validate_spec(
        merged(
            raw,
            {
                "output_dir": str(out / pruner),
                "tracking": {"enabled": False},
                "tune": {"space": SPACE, "pruner": {"name": pruner}},
            },
        )
    )
    started = time.perf_counter()
    result = tune(spec, trials=trials, study_name=pruner)
    seconds = time.perf_counter() - started
    done = sorted(result.study.trials, key=lambda t: t.number)
    (best,) = best_trials(result.study)
    return {
        "spec": spec,
        "seconds": seconds,
        "rounds": sum(int(t.user_attrs.get("rounds_run", 0)) for t in done),
        "pruned": sum(t.state.name == "PRUNED" for t in done),
        "best_value": best.value,
        "best_params": best.params,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.values else None,
                "params": t.params,
                "rounds_run": t.user_attrs.get("rounds_run"),
                "pruned_at": t.user_attrs.get("pruned_at"),
            }
            for t in done
        ],
    }


def final_accuracy(raw: dict[str, Any], seed: int) -> float:
    _, result = run_spec(merged(raw, {"seed": seed}))
    return float(result.final_metrics["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    raw = example(args.rounds)

    studies: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="fedpilot-tuning-") as tmp:
        for pruner in ("none", "median"):
            studies[pruner] = study(raw, pruner=pruner, trials=args.trials, out=Path(tmp))
            s = studies[pruner]
            print(
                f"pruner {pruner:>6}: best {s['best_value']:.4f} {s['best_params']}, "
                f"{s['rounds']} rounds, {s['pruned']} pruned ({s['seconds']:.0f} s)",
                flush=True,
            )
    plain, pruned = studies["none"], studies["median"]
    best = pruned if pruned["best_value"] >= plain["best_value"] else plain
    tuned_raw = applied(best["spec"], best["best_params"]).model_dump(mode="json")
    tuned_raw.pop("tune", None)
    tuned_raw.pop("output_dir")
    default = [final_accuracy(raw, seed) for seed in RESERVE_SEEDS]
    tuned = [final_accuracy(tuned_raw, seed) for seed in RESERVE_SEEDS]
    print(f"default {default}, tuned {tuned}", flush=True)

    saving = 100 * (1 - pruned["rounds"] / plain["rounds"])
    gap = 100 * (plain["best_value"] - pruned["best_value"])
    gain = 100 * (sum(tuned) / len(tuned) - sum(default) / len(default))
    studies_table = Table(
        f"Two studies of {args.trials} trials × {args.rounds} rounds (same space, same seeds)",
        ["pruner", "trials pruned", "rounds run", "best accuracy", "best params", "wall s"],
    )
    for name, s in (("none", plain), ("median", pruned)):
        studies_table.rows.append(
            [name, s["pruned"], s["rounds"], s["best_value"], _params(s["best_params"]),
             s["seconds"]]
        )  # fmt: skip
    final_table = Table(
        f"Central test accuracy after {args.rounds} rounds, rerun with seeds {RESERVE_SEEDS}",
        ["configuration", *(f"seed {s}" for s in RESERVE_SEEDS), "mean"],
    )
    lr, momentum, epochs = (raw["local"][k] for k in ("lr", "momentum", "epochs"))
    final_table.rows.append(
        [f"examples/digits.yaml (lr {lr}, momentum {momentum}, epochs {epochs})", *default,
         sum(default) / len(default)]
    )  # fmt: skip
    final_table.rows.append(
        [f"best tuned ({_params(best['best_params'])})", *tuned, sum(tuned) / len(tuned)]
    )
    checks = [
        Check("rounds saved by pruning", saving, 40.0, ">=", "%"),
        Check("best accuracy lost by pruning", gap, 1.0, "<=", "points"),
        Check(
            "tuned minus the example's default (mean accuracy)",
            gain,
            0.5,
            ">=",
            "points",
            note="0.5 points: more than one image of the 360 in the test set",
        ),
    ]
    write_results(
        "tuning",
        title="Federated tuning with Optuna: pruning's savings and the tuned model (digits)",
        description=__doc__.split("\n\n")[1],
        params={
            "trials": args.trials,
            "rounds": args.rounds,
            "spec": "examples/digits.yaml (10 learners, dirichlet(0.5), digits-mlp hidden 64)",
            "space": str(SPACE),
            "sampler": "TPE, seeded by the spec's seed (42), reseeded per trial number",
            "pruner": "median (2 startup trials, 1 warm-up round)",
            "final_seeds": list(RESERVE_SEEDS),
        },
        tables=[studies_table, final_table],
        checks=checks,
        notes=[
            "A trial's value is the final global model's central test accuracy; the pruner "
            "sees the same accuracy after every round. The final comparison reruns both "
            "configurations from scratch with seeds the studies never used (other "
            "partitions and initial models) on the same central test set: the digits task "
            "has no separate validation set for the central evaluation.",
            "A pruned trial's federation is stopped through its own stop after a whole "
            "round (status `stopped`): its rounds count in the study's total.",
        ],
        data={"studies": {k: {kk: vv for kk, vv in v.items() if kk != "spec"}
                          for k, v in studies.items()},
              "default": default, "tuned": tuned},
    )  # fmt: skip


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.removeprefix('local.')} {v:.3g}"
        if isinstance(v, float)
        else f"{k.removeprefix('local.')} {v}"
        for k, v in params.items()
    )


if __name__ == "__main__":
    main()
