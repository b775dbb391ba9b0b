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


def test_a_round_cut_and_run_again_is_counted_once(tmp_path: Path) -> None:
    # A process killed mid-round may have flushed some of its update lines (an alert or a
    # notice flushes them); the resumed run runs the round again, and logs them again.
    import json

    from fedpilot.report.facts import read_run

    run_dir = tmp_path / "runs" / "cut"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text("name: cut\nrounds: 1\n")
    attempt = [
        {"event": "RoundStarted", "round": 1},
        {"event": "UpdateRejected", "round": 1, "learner": "1", "reason": "update norm 9 is big"},
        {"event": "UpdateAccepted", "round": 1, "learner": "0", "metrics": {"sys.cpu_seconds": 2}},
    ]
    end = {"event": "RoundCompleted", "round": 1, "status": "completed", "accepted": ["0"]}
    lines = [*attempt, *attempt, end]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    facts = read_run(run_dir)
    assert sum(facts.outcomes.values()) == 1
    assert facts.system == {"sys.cpu_seconds": {"0": [2.0]}}
    assert [r.round for r in facts.rounds] == [1]


def test_a_long_list_on_the_page_says_how_much_it_leaves_out(tmp_path: Path) -> None:
    import json

    run_dir = tmp_path / "runs" / "noisy"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text("name: noisy\nrounds: 1\n")
    alerts = [
        {"event": "AlertFiring", "round": 1, "name": f"Rule{i}", "severity": "warning"}
        for i in range(205)
    ]
    warnings = [
        {"event": "Warning", "round": 1, "code": "drift", "message": f"warning {i}"}
        for i in range(13)
    ]
    lines = [*alerts, *warnings]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    html = write_report(run_dir, tmp_path / "page.html").read_text()
    assert "Rule199" in html and "Rule200" not in html
    assert "… and 5 more alerts" in html
    assert "warning 9" in html and "warning 10" not in html
    assert "… and 3 more warnings" in html


def test_a_run_named_from_inside_its_directory_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `fedpilot report .` from inside a run: "." has no name to look the run up by.
    run_dir = tmp_path / "runs" / "here"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text("name: here\nrounds: 1\n")
    monkeypatch.chdir(run_dir)
    html = write_report(Path("."), tmp_path / "page.html").read_text()
    assert "<h1>Run here</h1>" in html
