"""Alerts and the metrics address as a person sees them: `fedpilot run`'s live view and
`fedpilot server`'s printer of the recorded events."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from conftest import app_spec
from fedpilot.cli.live import LiveView
from fedpilot.cli.server import EventPrinter
from fedpilot.orchestrator.events import Alert
from fedpilot.rundir import RunDir


def test_the_live_view_shows_alerts() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    view = LiveView(console)
    view.on_alert(
        round=4, alert=Alert("FedpilotLearnerSilent", "firing", "warning", "learner l-1 [x]", 9.0)
    )
    view.on_alert(round=5, alert=Alert("FedpilotLearnerSilent", "resolved", "warning", "ok", None))
    out = console.export_text()
    assert "alert FedpilotLearnerSilent firing (round 4): learner l-1 [x]" in out
    assert "alert FedpilotLearnerSilent resolved (round 5): ok" in out


def test_the_server_prints_alerts_and_where_metrics_are(tmp_path: Path) -> None:
    spec = app_spec(tmp_path, runtime={"mode": "flower", "metrics_port": 9464})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunDir(run_dir).metrics_url.write_text("http://127.0.0.1:9464/metrics\n")
    console = Console(record=True, width=200, force_terminal=False)
    printer = EventPrinter(console, spec)
    printer.print({"event": "RunStarted", "start_round": 1, "run_dir": str(run_dir)})
    printer.print(
        {"event": "AlertFiring", "round": 2, "name": "FedpilotRoundStalled", "state": "firing",
         "summary": "Round stalled: no round has ended for 1300 s"}
    )  # fmt: skip
    out = console.export_text()
    assert "Prometheus metrics at http://127.0.0.1:9464/metrics" in out
    assert "alert FedpilotRoundStalled firing (round 2): Round stalled" in out
