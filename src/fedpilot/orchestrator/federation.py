"""A federation you can drive: one round per :meth:`Federation.step`, a loop over
:meth:`Federation.rounds`, a :meth:`Federation.stop` from any thread (or another process),
and a callback that asks to stop.

Around each round's computation (:class:`~.round.Round`) the driver does what a run must
do between rounds: checkpoint every stateful part, notify the callbacks, and honour stop
requests. A stopped run ends with status ``stopped`` and the reason; it has a checkpoint
of its last round and resumes from it like an interrupted one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from fedpilot.fleet import Fleet, FleetStopped
from fedpilot.orchestrator.checkpoint import RunState, save_checkpoint
from fedpilot.orchestrator.events import Callback, RoundSummary, RunInfo, RunResult
from fedpilot.orchestrator.interrupts import (
    Terminated,
    ending,
    handling_interrupts,
    held,
)
from fedpilot.orchestrator.round import Round
from fedpilot.orchestrator.state import StateRegistry
from fedpilot.rundir import RunDir, RunLock
from fedpilot.types import Metrics, Weights


def request_stop(run_dir: Path, reason: str) -> None:
    """Ask the run in ``run_dir`` (in whatever process it runs) to stop after its round."""
    request = RunDir(run_dir).stop_request
    tmp = request.with_name(f".{request.name}.tmp")
    tmp.write_text(json.dumps({"reason": reason}))
    os.replace(tmp, request)


class Federation:
    """A run, driven one round at a time.

    Built by :func:`fedpilot.launch.open_federation` from a spec (or by hand from parts,
    as the tests do). Use it as a context manager, which closes the fleet and ends the
    run if it is left before its last round::

        with open_federation(spec) as federation:
            for summary in federation.rounds():
                if summary.global_metrics.get("accuracy", 0) > 0.9:
                    federation.stop("good enough")
        federation.result.status  # "stopped"

    Args:
        round: The round's computation over the run's parts.
        state: Where the run stands (a fresh run's round 0, or a loaded checkpoint).
        registry: Every stateful part; restored from ``state`` here, checkpointed
            after each round.
        callbacks: Notified of the run's start, every round and its end.
        run: The run's identity, for callbacks (its ``history`` is the one of ``state``).
        fleet: Closed with the federation.
        lock: The run directory's lock, released with the federation.
    """

    def __init__(
        self,
        *,
        round: Round,
        state: RunState,
        registry: StateRegistry,
        callbacks: Callback,
        run: RunInfo,
        fleet: Fleet | None = None,
        lock: RunLock | None = None,
    ) -> None:
        self._round = round
        self.state = state
        self._registry = registry
        self._callbacks = callbacks
        self.run_info = replace(run, history=tuple(state.history))
        self._fleet = fleet
        self._lock = lock
        self._stop_reason: str | None = None
        self._stop_lock = threading.Lock()
        self._started = False
        self._last_round: RoundSummary | None = None
        self._announced = False
        self._saved: _Saved | None = None
        self.result: RunResult | None = None
        """How the run ended; None while it goes on."""
        registry.load_state_dict(state.components)

    # -- driving -----------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.run_info.run_dir

    @property
    def total_rounds(self) -> int:
        return self._round.settings.total_rounds

    @property
    def done(self) -> bool:
        """True once the run ended, or every round ran."""
        return self.result is not None or self.state.round >= self.total_rounds

    def step(self) -> RoundSummary:
        """Run the next round, checkpoint it and notify the callbacks.

        Raises:
            RuntimeError: the run has ended or has no round left.
        """
        if self.result is not None:
            raise RuntimeError(f"the run has ended ({self.result.status})")
        if self.state.round >= self.total_rounds:
            raise RuntimeError(f"all {self.total_rounds} rounds have run")
        self._start()
        ctx, summary = self._round.run(self.state)  # a signal may cut it: nothing is lost
        self._last_round = summary
        # A signal from here on waits until the round's checkpoint and records are written.
        with held():
            self._checkpoint()
            decision = self._callbacks.on_round_end(ctx=ctx, summary=summary)
        if decision is not None:
            self.stop(decision.reason)
        return summary

    def rounds(self) -> Iterator[RoundSummary]:
        """Each round's summary as it completes, until the last round or a stop; then the
        run ends (:attr:`result`). Ctrl-C and SIGTERM end it ``interrupted`` (the last
        checkpoint stays the one to resume); any other error ends it ``failed`` and is
        raised. A run whose rounds all failed or were rolled back ends ``failed`` too
        (:meth:`_nothing_trained`). Leaving the loop early ends nothing: :meth:`step`
        goes on, and :meth:`close` ends the run ``stopped``."""
        try:
            while not self.done:
                reason = self._stop_requested()
                if reason is not None:
                    self._finish("stopped", reason)
                    return
                yield self.step()
        except (KeyboardInterrupt, FleetStopped) as exc:
            self._back_to_checkpoint()
            self._finish("interrupted", _interruption(exc))
            return
        except GeneratorExit:
            raise  # the caller left the loop: the run goes on if it calls step() again
        except BaseException as exc:
            if self.result is None:
                self._back_to_checkpoint()
                self._finish("failed", f"{type(exc).__name__}: {exc}")
            raise
        if self.result is None:
            reason = self._stop_requested()
            if reason is not None:
                self._finish("stopped", reason)
            else:
                untrained = self._nothing_trained()
                self._finish(*(("failed", untrained) if untrained else ("completed", None)))

    def run(self) -> RunResult:
        """Every remaining round; SIGTERM is handled as Ctrl-C while it runs, and neither
        cuts a checkpoint or a record (see :mod:`.interrupts`)."""
        with handling_interrupts():
            try:
                for _ in self.rounds():
                    pass
            except KeyboardInterrupt as exc:
                # Landed here, between two rounds, outside rounds()' own handler: the run
                # is interrupted all the same (close() would call it stopped).
                if self.result is not None:
                    raise
                self._back_to_checkpoint()
                self._finish("interrupted", _interruption(exc))
        assert self.result is not None
        return self.result

    def stop(self, reason: str) -> None:
        """End the run after the round in progress (or before the next one). Safe to call
        from any thread; the first reason given is the one recorded."""
        with self._stop_lock:
            if self._stop_reason is None:
                self._stop_reason = reason

    def close(self) -> None:
        """End the run if it has not ended (``stopped``) and release the fleet."""
        try:
            if self.result is None and self._started:
                self._finish("stopped", self._stop_reason or "closed before the last round")
        finally:
            try:
                if self._fleet is not None:
                    self._fleet.close()
                    self._fleet = None
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside --------------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        warnings = self._round.begin(self.state)  # a signal may cut it
        with held():
            self._announce(warnings)

    def _announce(self, warnings: list[str]) -> None:
        """The run's start, told once its starting state is a checkpoint."""
        self._announced = True
        if self.state.round == 0:
            # Round 0 is a checkpoint too: a run cut before its first round resumes.
            self._checkpoint()
        else:
            self._saved = _Saved.of(self.state)
        self._callbacks.on_run_start(run=self.run_info)
        for message in warnings:
            self._callbacks.on_warning(round=self.state.round + 1, code="guard", message=message)

    def _checkpoint(self) -> None:
        self.state.components = self._registry.state_dict()
        save_checkpoint(self.run_dir, self.state)
        self._saved = _Saved.of(self.state)

    def _back_to_checkpoint(self) -> None:
        """After a cut round: the state as the last checkpoint has it (the round may have
        been cut while it updated the state)."""
        saved = self._saved
        if saved is None:
            return
        state = self.state
        state.round, state.weights, state.metrics = saved.round, saved.weights, saved.metrics
        state.rollbacks = saved.rollbacks
        del state.history[saved.history_length :]

    def _stop_requested(self) -> str | None:
        if self._stop_reason is not None:
            return self._stop_reason
        request = RunDir(self.run_dir).stop_request
        try:
            text = request.read_text()
        except FileNotFoundError:
            return None
        request.unlink(missing_ok=True)  # honoured once: a resumed run goes on
        try:
            reason = str(json.loads(text).get("reason") or "stop requested")
        except (ValueError, AttributeError):
            reason = "stop requested"
        self.stop(reason)
        return self._stop_reason

    def _nothing_trained(self) -> str | None:
        """Why this run failed although every round ran: none of the rounds it ran (since
        its start or its resume) gave a model the run kept. A round that failed trained
        nothing, and a rolled-back one's model was thrown away, so the model the run ends
        with is the one it started from. None when some round's model was kept."""
        ran = [r for r in self.state.history if r.round >= self.run_info.start_round]
        if not ran or any(r.status == "completed" for r in ran):
            return None
        failed = sum(r.status == "failed" for r in ran)
        reason = (
            f"no round of this run produced a model it kept: {len(ran)} rounds ran, "
            f"{failed} failed, {len(ran) - failed} rolled back"
        )
        last = self._last_round
        if last is not None:
            reason += f"; round {last.round}: {last.reason}"
            why = {**last.rejected, **last.failed}
            if why:
                learner = sorted(why)[0]
                reason += f" (learner {learner}: {why[learner]})"
        return reason

    def _finish(
        self, status: Literal["completed", "stopped", "interrupted", "failed"], error: str | None
    ) -> None:
        self._start()
        state = self.state
        with ending():
            if not self._announced:  # cut while it evaluated the initial model
                self._announce([])
            result = RunResult(
                status=status,
                rounds_completed=state.round,
                final_metrics=dict(state.metrics),
                rollbacks=state.rollbacks,
                weights=state.weights,
                history=tuple(state.history),
                error=error,
                tracking_error=self._callbacks.failure,
            )
            self.result = result
            self._callbacks.on_run_end(run=self.run_info, result=result)
            # An observer that failed while it ended the run (MLflow ending its run) is
            # in the result the caller sees.
            if self._callbacks.failure != result.tracking_error:
                self.result = replace(result, tracking_error=self._callbacks.failure)


def _interruption(exc: KeyboardInterrupt | FleetStopped) -> str:
    if isinstance(exc, FleetStopped):
        return f"{exc}; resume from the last checkpoint"
    if isinstance(exc, Terminated):
        return "terminated (SIGTERM); resume from the last checkpoint"
    return "interrupted by the user (Ctrl-C); resume from the last checkpoint"


@dataclass(frozen=True)
class _Saved:
    """What the last checkpoint holds of the run's state."""

    round: int
    weights: Weights
    metrics: Metrics
    rollbacks: int
    history_length: int

    @classmethod
    def of(cls, state: RunState) -> _Saved:
        return cls(state.round, state.weights, state.metrics, state.rollbacks, len(state.history))
