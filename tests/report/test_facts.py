"""What the report reads from a run directory, without a browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedpilot.report import write_report
from fedpilot.report.facts import reason_category


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        (
            "update norm 69.86 is an outlier in its cohort: robust z-score 158.3 > 3.5",
            "update norm N is an outlier in its cohort",
        ),
        ("timeout: learner 3 replied after 12.5 s", "timeout"),
        (
            "array 0 has 1 non-finite values (NaN or inf)",
            "array N has N non-finite values (NaN or inf)",
        ),
        ("", "no reason given"),
    ],
)
def test_reasons_are_grouped_without_their_numbers(reason: str, category: str) -> None:
    assert reason_category(reason) == category


def test_a_run_with_nothing_recorded_yet_gets_a_page_that_says_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "early"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text("name: early\nrounds: 3\n")
    out = write_report(run_dir, tmp_path / "page.html")
    html = out.read_text()
    assert '<figure class="plot"' not in html
    assert "No round has ended yet." in html
    assert "no audit.jsonl" in html
    assert "name: early" in html


def test_metrics_on_the_guarded_ones_scale_are_drawn_beside_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "detector"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text("name: detector\nguard: {metric: map50_95}\n")
    events = [
        {
            "event": "RoundCompleted",
            "round": number,
            "status": "completed",
            "participants": ["0"],
            "accepted": ["0"],
            "global_metrics": {
                "map50_95": 0.1 * number,
                "map50": 0.2 * number,
                "precision": 0.3,
                "loss": 5.0 / number,
                "boxes": 40.0,
            },
        }
        for number in (1, 2)
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    html = write_report(run_dir, tmp_path / "page.html").read_text()
    assert "map50_95 (guarded) and map50, precision of the global model" in html
    assert "global loss" not in html and "global boxes" not in html
