"""The federation as a Flower app (a FAB) and the run config that travels with it.

The FAB holds no code: its components name fedpilot's own ServerApp and ClientApp,
which every machine has installed (Flower's run-time dependency installation is off,
as nothing can be downloaded). What differs per run travels in the run config.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from fedpilot import __version__
from fedpilot.errors import UserError

SERVER_APP = "fedpilot.fleet.flower.apps:server_app"
CLIENT_APP = "fedpilot.fleet.flower.apps:client_app"

_PYPROJECT = f"""\
[project]
name = "fedpilot-federation"
version = "{__version__}"
description = "A fedpilot federation: fedpilot's orchestrator as the ServerApp."
license = "Apache-2.0"
dependencies = ["fedpilot=={__version__}"]

[tool.flwr.app]
publisher = "fedpilot"

[tool.flwr.app.components]
serverapp = "{SERVER_APP}"
clientapp = "{CLIENT_APP}"

[tool.flwr.app.config]
fedpilot-spec = ""
fedpilot-run-dir = ""
fedpilot-resume = false
fedpilot-superlink-log = ""
fedpilot-superlink-log-offset = 0
"""


@dataclass(frozen=True)
class FederationConfig:
    """What the ServerApp and ClientApp of one run need to know."""

    spec_json: str
    """The resolved spec (learners build their Task from it)."""
    run_dir: str
    """The run directory on the server machine (the ServerApp writes it)."""
    resume: bool = False
    superlink_log: str = ""
    """The SuperLink's log file, read for refused learners ('' if not ours)."""
    superlink_log_offset: int = 0
    """Where in that file this server's SuperLink began writing."""

    def as_run_config(self) -> dict[str, str | bool | int]:
        return {
            "fedpilot-spec": self.spec_json,
            "fedpilot-run-dir": self.run_dir,
            "fedpilot-resume": self.resume,
            "fedpilot-superlink-log": self.superlink_log,
            "fedpilot-superlink-log-offset": self.superlink_log_offset,
        }

    @classmethod
    def from_context(cls, context: Context) -> FederationConfig:
        config = context.run_config
        spec_json = config.get("fedpilot-spec")
        if not isinstance(spec_json, str) or not spec_json:
            raise UserError(
                "this Flower run carries no fedpilot spec: start it with `fedpilot server`"
            )
        return cls(
            spec_json=spec_json,
            run_dir=str(config.get("fedpilot-run-dir", "")),
            resume=bool(config.get("fedpilot-resume", False)),
            superlink_log=str(config.get("fedpilot-superlink-log", "")),
            superlink_log_offset=int(config.get("fedpilot-superlink-log-offset", 0)),
        )


def build_fab(workdir: Path) -> tuple[bytes, str]:
    """The FAB's bytes and sha256 hex digest; ``workdir`` receives its source folder."""
    from flwr.cli.build import build_fab_from_disk

    source = workdir / "app"
    source.mkdir(parents=True, exist_ok=True)
    (source / "pyproject.toml").write_text(_PYPROJECT)
    fab = build_fab_from_disk(source)
    return fab, hashlib.sha256(fab).hexdigest()
