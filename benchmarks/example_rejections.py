"""Poisoning defaults against honest learners: every shipped example, at its full rounds.

The default update checks (a delta norm over ``validation.max_norm_ratio`` × the cohort
median, a ``num-examples`` claim over ``validation.max_examples_ratio`` × the cohort
median, non-finite values, wrong shapes or dtypes) must refuse what no honest learner
sends and nothing else. Each example runs as a user runs it (``fedpilot run SPEC
--json``, tracking off) and its ``events.jsonl`` is read back: every ``UpdateRejected``
is attributed to an honest learner or to one of the example's simulated attackers
(``simulation.attack``, drawn as the run draws them).

Run: ``python benchmarks/example_rejections.py [--examples NAME ...] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_DIR, Check, Table, write_results
from fedpilot.fleet.simulation import choose_attackers
from fedpilot.spec import load_spec

EXAMPLES_DIR = REPO_DIR / "examples"
FEDPILOT = Path(sys.executable).with_name("fedpilot")


def run_example(path: Path, rounds: int | None) -> dict[str, Any]:
    """Run one example through the CLI; count its updates by outcome and by who sent them."""
    spec = load_spec(path)
    with tempfile.TemporaryDirectory(prefix="fedpilot-rejections-") as out:
        command = [str(FEDPILOT), "run", str(path), "--json", "--output-dir", out]
        command += ["--set", "tracking.enabled=false"]
        if rounds is not None:
            command += ["--set", f"rounds={min(rounds, spec.rounds)}"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{path.name}: exit {done.returncode}\n{done.stderr[-3000:]}")
        summary = json.loads(done.stdout)
        events = [
            json.loads(line)
            for line in (Path(summary["run_dir"]) / "events.jsonl").read_text().splitlines()
            if line.strip()
        ]
    counts: Counter[str] = Counter(e["event"] for e in events)
    # In the order the fleet lists them (numeric ids), which is the order the run drew its
    # attackers from.
    learners = sorted(
        {p for e in events if e["event"] == "RoundStarted" for p in e.get("participants", ())},
        key=lambda learner: (
            not learner.isdigit(),
            int(learner) if learner.isdigit() else 0,
            learner,
        ),
    )
    attack = spec.simulation.attack if spec.simulation is not None else None
    attackers = (
        choose_attackers(learners, attack.fraction, spec.seed) if attack is not None else set()
    )
    rejected = [e for e in events if e["event"] == "UpdateRejected"]
    honest_rejected = [e for e in rejected if e["learner"] not in attackers]
    return {
        "rounds": summary["rounds_completed"],
        "status": summary["status"],
        "accepted": counts["UpdateAccepted"],
        "rejected": len(rejected),
        "honest_rejected": len(honest_rejected),
        "attackers": len(attackers),
        "failed": counts["UpdateFailed"],
        "rolled_back": counts["ModelRolledBack"],
        "reasons": sorted({str(e.get("reason")) for e in honest_rejected}),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", nargs="+", help="example names (default: all)")
    parser.add_argument("--rounds", type=int, help="cap each example's rounds (default: full)")
    args = parser.parse_args()
    paths = sorted(EXAMPLES_DIR.glob("*.yaml"))
    if args.examples:
        paths = [p for p in paths if p.stem in args.examples]

    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        results[path.stem] = row = run_example(path, args.rounds)
        print(
            f"{path.stem:>22}: {row['rounds']} rounds, {row['accepted']} accepted, "
            f"{row['rejected']} rejected ({row['honest_rejected']} honest), "
            f"{row['seconds']:.0f} s",
            flush=True,
        )

    table = Table(
        "Updates per example (full rounds unless --rounds)",
        [
            "example",
            "rounds",
            "status",
            "accepted",
            "rejected",
            "from honest learners",
            "attackers",
            "failed",
            "seconds",
        ],
        [
            [
                name,
                r["rounds"],
                r["status"],
                r["accepted"],
                r["rejected"],
                r["honest_rejected"],
                r["attackers"],
                r["failed"],
                r["seconds"],
            ]
            for name, r in results.items()
        ],
    )
    checks = [
        Check(
            f"{name}: honest updates rejected",
            r["honest_rejected"],
            0,
            "<=",
            note="; ".join(r["reasons"]),
        )
        for name, r in results.items()
    ]
    write_results(
        "example_rejections",
        title="Default update checks refuse no honest learner in the shipped examples",
        description=__doc__.split("\n\n")[1],
        params={"examples": list(results), "rounds": args.rounds or "full"},
        tables=[table],
        checks=checks,
        notes=[
            "A rejection from a simulated attacker (robust-under-attack) is the checks "
            "working; only rejections of honest learners count against the target.",
            "Failed updates (a learner that raised or missed the deadline) are not "
            "rejections and are reported apart.",
        ],
        data=results,
    )


if __name__ == "__main__":
    main()
