"""Running the `fedpilot` command in tests: a real subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
SMALL_DIGITS = [
    "--set", "rounds=4",
    "--set", "data.num_learners=4",
    "--set", "sampling.min_learners=2",
    "--set", "local.epochs=1",
    "--set", "tracking.enabled=false",
    "--set", "evaluation.federated_every=0",
]  # fmt: skip


def fedpilot(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedpilot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
