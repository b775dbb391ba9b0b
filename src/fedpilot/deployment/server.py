"""`fedpilot server`: start a SuperLink, submit the federation as a Flower app, follow it.

The orchestrator itself runs as the ServerApp, in the process Flower starts for the
run (:mod:`fedpilot.fleet.flower.apps`); it writes the run directory as a local run
does. This process follows that directory's event log, so what it shows is what was recorded.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpilot.deployment.bundle import FederationConfig, build_fab
from fedpilot.deployment.superlink import (
    FINISHED,
    Control,
    SuperLinkProcess,
    Transport,
    local_address,
)
from fedpilot.deployment.tail import LineFollower
from fedpilot.errors import SpecError
from fedpilot.orchestrator.checkpoint import restore_checkpoint
from fedpilot.orchestrator.vocabulary import EventType
from fedpilot.rundir import RunDir, RunLock
from fedpilot.security.certs import CertificatePaths
from fedpilot.security.keys import load_allow_list
from fedpilot.spec import FederationSpec, FlowerRuntime

Event = dict[str, Any]


@dataclass(frozen=True)
class ServerOutcome:
    status: str
    """completed, stopped, failed or interrupted (as a local run's)."""
    error: str | None = None
    finished: Event | None = None
    """The run's RunFinished event, when the ServerApp got that far."""


def flower_runtime(spec: FederationSpec) -> FlowerRuntime:
    if not isinstance(spec.runtime, FlowerRuntime):
        raise SpecError(
            "`fedpilot server` runs a federation across machines: the spec needs "
            f"runtime.mode=flower, got runtime.mode={spec.runtime.mode!r} "
            "(add --set runtime.mode=flower)",
            field="runtime.mode",
        )
    return spec.runtime


class FederationServer:
    """Runs one federation over Flower's deployment engine.

    Args:
        spec: the run's spec (``runtime.mode: flower``).
        resume_dir: continue this run directory from its last checkpoint; otherwise
            :meth:`prepare` makes a new one.
        superlink: use this running SuperLink instead of starting one.
        insecure: no TLS (development only).
        on_event: called with every event the run records, as it is recorded.
    """

    def __init__(
        self,
        spec: FederationSpec,
        *,
        resume_dir: Path | None = None,
        superlink: str | None = None,
        insecure: bool | None = None,
        on_event: Callable[[Event], None] = lambda event: None,
    ) -> None:
        self.spec = spec
        self.runtime = flower_runtime(spec)
        self.run_dir = resume_dir.resolve() if resume_dir is not None else Path()
        self.resume = resume_dir is not None
        self.superlink = superlink if superlink is not None else self.runtime.superlink
        self.insecure = self.runtime.insecure if insecure is None else insecure
        self.on_event = on_event
        self.link: SuperLinkProcess | None = None
        self.flower_run_id: int | None = None
        self._started = False
        self._lock: RunLock | None = None
        self._certificates: CertificatePaths | None = None
        if not self.insecure:
            if self.runtime.certificates is None:
                raise SpecError(
                    "TLS is on by default: set runtime.certificates to the folder "
                    "`fedpilot certs init DIR --host HOST` wrote, or pass --insecure",
                    field="runtime.certificates",
                )
            self._certificates = CertificatePaths.in_dir(
                spec.resolve_path(self.runtime.certificates)
            )
            self._certificates.require_server_files()
        self._allowed = None
        if self.runtime.authorized_learners is not None:
            self._allowed = load_allow_list(spec.resolve_path(self.runtime.authorized_learners))

    def prepare(self) -> Path:
        """The run directory: a new one (made now) unless resuming. This process holds its
        lock until :meth:`run` returns (its ServerApp runs the rounds under it).

        Raises:
            RunDirInUse: another process runs this run.
            ResumeError: resuming, and the run has no intact checkpoint.
        """
        if not self.resume and self.run_dir == Path():
            from fedpilot.launch import new_run_dir

            self.run_dir = new_run_dir(self.spec)[1].resolve()
        if self._lock is None:
            lock = RunLock.acquire(self.run_dir)
            if self.resume:
                try:  # refused here (exit 2), not later from inside the ServerApp
                    restore_checkpoint(self.run_dir)
                except BaseException:
                    lock.release()
                    raise
            self._lock = lock
        return self.run_dir

    @property
    def transport(self) -> Transport:
        ca = self._certificates.ca_cert if self._certificates is not None else None
        return Transport(insecure=self.insecure, ca_cert=ca)

    def run(self) -> ServerOutcome:
        self.prepare()
        try:
            return self._serve()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _serve(self) -> ServerOutcome:
        layout = RunDir(self.run_dir)
        workdir = layout.flower
        follower = EventFollower(layout.events)
        address = self.superlink
        log_offset = 0
        if address is None:
            self.link = SuperLinkProcess(
                workdir,
                self.runtime.listen,
                certificates=self._certificates,
                authenticate=self._allowed is not None,
            )
            log_offset = self.link.log_file.stat().st_size if self.link.log_file.exists() else 0
            self.link.start()
            address = local_address(self.runtime.listen)
        control = Control(address, self.transport)
        try:
            if self._allowed is not None:
                control.register(self._allowed)
            if self.resume:
                control.stop_unfinished_runs()  # a killed server's run must not go on
            fab, digest = build_fab(workdir)
            config = FederationConfig(
                spec_json=self.spec.model_dump_json(),
                run_dir=str(self.run_dir),
                resume=self.resume,
                superlink_log=str(self.link.log_file) if self.link is not None else "",
                superlink_log_offset=log_offset,
            )
            # A user's ClientApp reads its own settings from the run config, as under
            # fedpilot's local fleet.
            run_config = {**self.spec.task.run_config, **config.as_run_config()}
            self.flower_run_id = control.start_run(fab, digest, run_config)
            return self._follow(control, follower)
        except KeyboardInterrupt:
            if self.flower_run_id is not None:
                # Ctrl-C at a terminal reaches the SuperLink (our child, same process
                # group) too: one already shutting down has no run left to stop, and a
                # resumed server stops unfinished runs anyway.
                with contextlib.suppress(Exception):
                    control.stop_run(self.flower_run_id)
            return ServerOutcome("interrupted", "interrupted by the user (Ctrl-C)")
        finally:
            control.close()
            if self.link is not None:
                self.link.stop()

    def _follow(self, control: Control, follower: EventFollower) -> ServerOutcome:
        assert self.flower_run_id is not None
        next_status = 0.0
        while True:
            ended = False
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + 1.0
                status, sub_status, details = control.run_status(self.flower_run_id)
                ended = status == FINISHED
            # Read the events after the status: a ServerApp that has ended wrote them all.
            finished = self._relay(follower)
            if finished is not None:
                return ServerOutcome(
                    str(finished.get("status", "failed")), finished.get("error"), finished
                )
            if ended:
                return ServerOutcome("failed", self._server_error(sub_status, details))
            time.sleep(0.1)

    def _relay(self, follower: EventFollower) -> Event | None:
        """Pass on the new events of this server's ServerApp (from its RunStarted on:
        a ServerApp of a killed server may still be finishing, and write, for a moment);
        the RunFinished event if it is among them."""
        finished = None
        for event in follower.new_events():
            kind = event.get("event")
            self._started = self._started or kind == EventType.RUN_STARTED
            if not self._started:
                continue
            self.on_event(event)
            if kind == EventType.RUN_FINISHED:
                finished = event
        return finished

    def _server_error(self, sub_status: str, details: str) -> str:
        path = RunDir(self.run_dir).server_error
        if path.exists():
            return path.read_text().strip()
        return f"the ServerApp ended ({sub_status or 'unknown'}) before the run finished" + (
            f": {details}" if details else ""
        )


class EventFollower:
    """Reads the events a run appends to its ``events.jsonl``, from the current end."""

    def __init__(self, path: Path) -> None:
        self._lines = LineFollower(path)

    def new_events(self) -> Iterator[Event]:
        for line in self._lines.new_lines():
            if line.strip():
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):  # a torn or damaged line
                    continue
                if isinstance(event, dict):
                    yield event


def prepare_spec(spec: FederationSpec) -> FederationSpec:
    """The spec as the ServerApp must see it: paths absolute (it may run elsewhere)."""
    if spec.output_dir.is_absolute():
        return spec
    return spec.model_copy(update={"output_dir": spec.output_dir.resolve()})


__all__ = ["EventFollower", "FederationServer", "ServerOutcome", "prepare_spec"]
