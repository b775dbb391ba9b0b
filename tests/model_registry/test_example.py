"""The README's commands on the default federation: run examples/digits.yaml, promote."""

from __future__ import annotations

import json
from pathlib import Path

from clitools import EXAMPLES, fedpilot


def test_run_the_digits_example_then_promote_it(tmp_path: Path) -> None:
    ran = fedpilot("run", str(EXAMPLES / "digits.yaml"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    promoted = fedpilot("models", "promote", "digits", "--json", cwd=tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    body = json.loads(promoted.stdout)
    # The first promotion has no champion to compare with: the floors alone decide.
    assert (body["champion"], body["champion_before"]) == ("1", None)
    assert body["checked"] == ["floor", "worst_learner_floor"]
    listed = fedpilot("models", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "digits" in listed.stdout
