"""The components of the federation's Flower app: fedpilot's orchestrator as the
ServerApp, fedpilot's learner (or the spec's own ClientApp) as the ClientApp.

Flower starts the ServerApp in its own process on the server machine after
``fedpilot server`` submits the run, and a ClientApp process on a learner's machine for
each message; both read what they need from the run config (:mod:`fedpilot.deployment.bundle`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedpilot._imports import import_object
from fedpilot._threads import limit_torch_threads
from fedpilot.deployment.bundle import FederationConfig
from fedpilot.errors import SpecError
from fedpilot.fleet.flower.fleet import FlowerFleet
from fedpilot.fleet.flower.refusals import RefusalLog
from fedpilot.rundir import RunDir
from fedpilot.security.keys import load_allow_list
from fedpilot.spec import FederationSpec, FlowerRuntime

server_app = ServerApp()


@server_app.main()
def _serve(grid: Grid, context: Context) -> None:
    config = FederationConfig.from_context(context)
    try:
        run_federation_on(grid, config)
    except BaseException as exc:
        # `fedpilot server` reports it when the run ends without a RunFinished event.
        RunDir(Path(config.run_dir)).server_error.write_text(f"{type(exc).__name__}: {exc}\n")
        raise


def run_federation_on(grid: Grid, config: FederationConfig) -> None:
    """Wait for enough learners, then run (or resume) the federation on ``grid``."""
    from fedpilot.launch import load_run_spec, run_federation

    run_dir = Path(config.run_dir)
    spec = load_run_spec(run_dir)
    runtime = spec.runtime
    if not isinstance(runtime, FlowerRuntime):
        raise SpecError("`runtime.mode` must be flower for a Flower run", field="runtime.mode")
    refusals = None
    if config.superlink_log:
        allowed: frozenset[str] = frozenset()
        if runtime.authorized_learners is not None:
            path = spec.resolve_path(runtime.authorized_learners)
            allowed = frozenset(learner.fingerprint for learner in load_allow_list(path))
        log = Path(config.superlink_log)
        refusals = RefusalLog(log, config.superlink_log_offset, allowed)
    fleet = FlowerFleet(grid, poll_interval=runtime.poll_interval, refusals=refusals)
    wait_for_learners(fleet, runtime.min_learners_to_start or spec.sampling.min_learners, runtime)
    run_federation(
        spec,
        fleet=fleet,
        run_dir=None if config.resume else run_dir,
        resume_dir=run_dir if config.resume else None,
        lock=False,  # `fedpilot server` holds the run directory's lock for its ServerApp
    )


def wait_for_learners(fleet: FlowerFleet, count: int, runtime: FlowerRuntime) -> None:
    """Block until ``count`` learners are connected or ``startup_timeout`` passes."""
    deadline = time.monotonic() + runtime.startup_timeout
    while len(fleet.online()) < count:
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{len(fleet.online())} learners connected after "
                f"runtime.startup_timeout={runtime.startup_timeout}s, "
                f"runtime.min_learners_to_start is {count}"
            )
        time.sleep(runtime.poll_interval)


class _RunClientApp(ClientApp):
    """Hands every message to the run's learner app (:func:`_node_app`). Routing by
    message type is that app's business: which ``query.<action>`` messages it answers
    depends on the spec's transforms, known only once a message brings the run config."""

    def __call__(self, message: Message, context: Context) -> Message:
        app = _node_app(FederationConfig.from_context(context).spec_json)
        return app(message, context)


client_app = _RunClientApp()


@functools.lru_cache(maxsize=2)
def _node_app(spec_json: str) -> ClientApp:
    """fedpilot's learner for the spec's Task, or the spec's own ClientApp."""
    from fedpilot.learner.app import make_clientapp

    spec = FederationSpec.model_validate_json(spec_json)
    # The spec's thread count holds on learner machines too: training with the
    # machine's default would end in other last bits than the same run elsewhere.
    limit_torch_threads(spec.runtime.torch_threads)
    ref = spec.task.flower_clientapp
    if ref is None:
        return make_clientapp(spec)
    # The learner machine has the user's code where the spec's folder is, or installed.
    base_dir = spec.base_dir if spec.base_dir is not None and spec.base_dir.is_dir() else None
    app = import_object(ref, field="task.flower_clientapp", base_dir=base_dir)
    if not isinstance(app, ClientApp):
        raise SpecError(
            f"`task.flower_clientapp` must name a flwr ClientApp, got {ref!r}",
            field="task.flower_clientapp",
        )
    return app
