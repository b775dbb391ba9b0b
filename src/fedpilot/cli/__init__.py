"""The `fedpilot` command. User errors exit 2 with one paragraph, never a traceback."""

from __future__ import annotations

import sys

import click
import typer

from fedpilot.cli.audit import audit_app
from fedpilot.cli.data import data_app
from fedpilot.cli.deploy import deploy_app
from fedpilot.cli.learner import learner_command
from fedpilot.cli.models import models_app
from fedpilot.cli.monitoring import monitoring_app
from fedpilot.cli.report import report_command
from fedpilot.cli.run import run_command
from fedpilot.cli.runs import runs_app
from fedpilot.cli.security import certs_app, learners_app
from fedpilot.cli.serve import serve_command
from fedpilot.cli.server import server_command
from fedpilot.cli.spec import spec_app
from fedpilot.cli.tune import tune_command
from fedpilot.errors import UserError

app = typer.Typer(
    name="fedpilot",
    help="Federated learning operations: run, track, guard and resume federations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run")(run_command)
app.command("server")(server_command)
app.command("learner")(learner_command)
app.command("serve")(serve_command)
app.command("tune")(tune_command)
app.add_typer(spec_app, name="spec")
app.add_typer(runs_app, name="runs")
app.add_typer(certs_app, name="certs")
app.add_typer(learners_app, name="learners")
app.add_typer(deploy_app, name="deploy")
app.add_typer(models_app, name="models")
app.add_typer(monitoring_app, name="monitoring")
app.add_typer(audit_app, name="audit")
app.add_typer(data_app, name="data")
app.command("report")(report_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except UserError as exc:
        print(f"fedpilot: error: {exc}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        print("fedpilot: aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("fedpilot: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


def entry() -> None:
    sys.exit(main())


__all__ = ["app", "entry", "main"]
