"""A federation from its spec: everything a run is made of, built and wired together.

``open_federation`` gives a :class:`~fedpilot.orchestrator.Federation` to drive round by
round; ``run_federation`` runs one to its end; ``run_centralized`` is the pooled-data
baseline. This is the one place that knows every package: the orchestrator knows only
the parts' interfaces.
"""

from fedpilot.launch.assemble import (
    build_fleet,
    build_parts,
    initial_weights,
    open_federation,
    round_settings,
    run_federation,
    server_task,
)
from fedpilot.launch.centralized import run_centralized
from fedpilot.launch.rundirs import load_run_spec, new_run_dir, run_tracking_uri

__all__ = [
    "build_fleet",
    "build_parts",
    "initial_weights",
    "load_run_spec",
    "new_run_dir",
    "open_federation",
    "round_settings",
    "run_centralized",
    "run_federation",
    "run_tracking_uri",
    "server_task",
]
