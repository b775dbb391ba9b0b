"""`fedpilot runs list|show` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedpilot.cli.runs import runs_app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # rich would otherwise squeeze tables to 80 columns


@pytest.fixture
def runs_dir(build: Any, tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    spec = build.spec(root, name="digits")
    build.drive_events(build.run(spec, "20260101-aaa"), [1, 2, 3])
    build.drive_events(build.run(spec, "20260102-bbb"), [1], status="failed", error="[boom]")
    return root


def test_list_table(runs_dir: Path) -> None:
    result = runner.invoke(runs_app, ["list", "--output-dir", str(runs_dir)], env=WIDE)
    assert result.exit_code == 0, result.output
    for text in ("20260101-aaa", "20260102-bbb", "digits", "completed", "failed", "3/3"):
        assert text in result.stdout
    assert "Final accuracy" in result.stdout and "0.8000" in result.stdout


def test_list_json(runs_dir: Path) -> None:
    result = runner.invoke(runs_app, ["list", "-o", str(runs_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {r["run_id"] for r in data} == {"20260101-aaa", "20260102-bbb"}
    assert {r["status"] for r in data} == {"completed", "failed"}
    assert all("rounds" not in r for r in data)


def test_list_empty_dir(tmp_path: Path) -> None:
    result = runner.invoke(runs_app, ["list", "-o", str(tmp_path / "none")], env=WIDE)
    assert result.exit_code == 0
    assert "No runs in" in result.stdout
    result = runner.invoke(runs_app, ["list", "-o", str(tmp_path / "none"), "--json"])
    assert json.loads(result.stdout) == []


def test_show_table(runs_dir: Path) -> None:
    result = runner.invoke(runs_app, ["show", "20260101", "-o", str(runs_dir)], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Run 20260101-aaa" in out and "rolled_back" in out and "accuracy dropped" in out
    failed = runner.invoke(runs_app, ["show", "20260102", "-o", str(runs_dir)], env=WIDE)
    assert "[boom]" in failed.stdout  # user text is not read as rich markup


def test_show_json(runs_dir: Path) -> None:
    result = runner.invoke(runs_app, ["show", "20260101-aaa", "-o", str(runs_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "digits" and data["status"] == "completed"
    assert [r["status"] for r in data["rounds"]] == ["completed", "rolled_back", "completed"]
    assert data["final_metrics"]["accuracy"] == pytest.approx(0.8)


@pytest.mark.parametrize(("run", "message"), [("zzz", "no run matches"), ("2026", "ambiguous")])
def test_show_unknown_or_ambiguous_exits_2(runs_dir: Path, run: str, message: str) -> None:
    result = runner.invoke(runs_app, ["show", run, "-o", str(runs_dir)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
