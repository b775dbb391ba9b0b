"""The synchronous round loop: select → send → validate and fold → cohort checks →
server step → evaluate → guard → checkpoint → events. Nothing else lives here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedpilot.aggregation import Aggregator, ServerOptimizer
from fedpilot.aggregation.weighting import UpdateWeighting
from fedpilot.fleet import Fleet
from fedpilot.guard import Guard
from fedpilot.learner.protocol import train_config
from fedpilot.ledger import ParticipationLog
from fedpilot.orchestrator._tally import RoundTally
from fedpilot.orchestrator.checkpoint import RunState, save_checkpoint
from fedpilot.orchestrator.evaluation import Evaluator
from fedpilot.orchestrator.events import (
    Callback,
    RoundSummary,
    RunInfo,
    RunResult,
    UpdateVerdict,
)
from fedpilot.selection import LoggedSelector, Selector
from fedpilot.spec import FederationSpec
from fedpilot.tasks._base import TrainSettings
from fedpilot.transforms import UpdateTransform, state_key
from fedpilot.types import (
    Instruction,
    LearnerId,
    LearnerState,
    Metrics,
    Reply,
    RoundContext,
    Update,
    Weights,
    derive_rng,
    derive_seed,
)
from fedpilot.validation import UpdateValidator


@dataclass
class RoundParts:
    """The pluggable pieces one round is made of."""

    fleet: Fleet
    selector: Selector
    aggregator: Aggregator
    server_opt: ServerOptimizer
    validator: UpdateValidator
    weighting: UpdateWeighting
    guard: Guard
    evaluator: Evaluator
    ledger: ParticipationLog
    """The learners' track record (adaptive weighting reads it): the selector's own log
    when it keeps one, which its ``observe`` updates, else the orchestrator's."""
    transforms: list[UpdateTransform] = field(default_factory=list)
    """The update transforms' server halves (``fedpilot.transforms.build_transforms``)."""

    @property
    def ledger_is_selectors(self) -> bool:
        return isinstance(self.selector, LoggedSelector) and self.ledger is self.selector.log


class SyncOrchestrator:
    def __init__(
        self, spec: FederationSpec, parts: RoundParts, callbacks: Callback, run: RunInfo
    ) -> None:
        self.spec = spec
        self.parts = parts
        self.callbacks = callbacks
        self.run_info = run
        self.learner_states: dict[LearnerId, LearnerState] = {}
        """Each learner's state as its last reply left it; sent with its next work."""

    @property
    def run_dir(self) -> Path:
        return self.run_info.run_dir

    def run(self, state: RunState) -> RunResult:
        """Rounds ``state.round + 1`` to ``spec.rounds``; returns however the run ended."""
        self._restore(state)
        self.callbacks.on_run_start(run=self.run_info)
        try:
            while state.round < self.spec.rounds:
                state = self._round(state, state.round + 1)
        except KeyboardInterrupt:
            save_checkpoint(self.run_dir, state)  # the last completed round, written again
            return self._finish(state, "interrupted", "interrupted by the user (Ctrl-C)")
        except BaseException as exc:
            self._finish(state, "failed", f"{type(exc).__name__}: {exc}")
            raise
        return self._finish(state, "completed", None)

    def _restore(self, state: RunState) -> None:
        parts = self.parts
        parts.server_opt.load_state_dict(state.server_opt)
        components = state.components
        parts.selector.load_state_dict(components.get("selector", {}))
        if not parts.ledger_is_selectors:
            parts.ledger.load_state_dict(components.get("ledger", {}))
        parts.fleet.load_state_dict(components.get("fleet", {}))
        self.learner_states = {
            learner: {key: list(arrays) for key, arrays in own.items()}
            for learner, own in components.get("learner_state", {}).items()
        }
        self._load_transforms(components.get("transforms", {}))

    def _transform_states(self) -> dict[str, Any]:
        return {state_key(t): t.state_dict() for t in self.parts.transforms}

    def _load_transforms(self, states: dict[str, Any]) -> None:
        for transform in self.parts.transforms:
            transform.load_state_dict(states.get(state_key(transform), {}))

    def _components(self) -> dict[str, Any]:
        parts = self.parts
        components = {
            "selector": parts.selector.state_dict(),
            "fleet": parts.fleet.state_dict(),
            # A copy: replies of an interrupted round must not leak into this round's.
            "learner_state": dict(self.learner_states),
            "transforms": self._transform_states(),
        }
        if not parts.ledger_is_selectors:
            components["ledger"] = parts.ledger.state_dict()
        return components

    def _finish(self, state: RunState, status: str, error: str | None) -> RunResult:
        result = RunResult(
            status=status,  # type: ignore[arg-type]
            rounds_completed=state.round,
            final_metrics=dict(state.metrics),
            rollbacks=state.rollbacks,
            weights=state.weights,
            history=tuple(state.history),
            error=error,
        )
        self.callbacks.on_run_end(run=self.run_info, result=result)
        return result

    def _round(self, state: RunState, round_: int) -> RunState:
        spec, parts = self.spec, self.parts
        started = time.perf_counter()
        learners = list(parts.fleet.learners())
        for notice in parts.fleet.notices():
            self.callbacks.on_fleet_notice(round=round_, notice=notice)
        ctx = RoundContext(
            run_id=self.run_info.run_id,
            round=round_,
            total_rounds=spec.rounds,
            seed=spec.seed,
            num_learners=len(learners),
        )
        selection = parts.selector.select(
            candidates=learners,
            size=spec.sampling.size(len(learners)),
            ctx=ctx,
            rng=derive_rng(spec.seed, round_, "sampling"),
        )
        self.callbacks.on_round_start(ctx=ctx, participants=selection.chosen)

        position = {info.id: i for i, info in enumerate(learners)}
        config = self._config(round_)
        shared: dict[tuple[tuple[str, int], ...], dict[str, Weights]] = {}
        instructions = {
            learner: Instruction(
                "train",
                state.weights,
                # Learner i's own seed for this round: the same whoever else takes part.
                {
                    **config,
                    "seed": derive_seed(spec.seed, round_, "local-training", position[learner]),
                },
                self._train_extras(learner, state.weights, ctx, shared),
                self.learner_states.get(learner, {}),
            )
            for learner in selection.chosen
        }
        parts.aggregator.begin(reference=state.weights, ctx=ctx)
        parts.weighting.begin_round(state.weights)
        tally = RoundTally(deadline_s=self._deadline_s())
        deadline = time.monotonic() + spec.runtime.round_timeout
        for reply in parts.fleet.dispatch(instructions, deadline=deadline):
            if reply.state is not None:
                self.learner_states[reply.learner] = reply.state
            self._take(ctx, reply, state.weights, tally)
        self._cohort_checks(ctx, tally)
        for learner in sorted(tally.pending):  # accepted with their cohort
            for transform in parts.transforms:
                transform.on_accepted(tally.pending[learner], ctx=ctx)
        tally.pending.clear()

        candidate_metrics: Metrics = {}
        aggregation_report: dict[str, Any] = {}
        reason: str | None = None
        if len(tally.accepted) < spec.sampling.min_learners:
            status = "failed"
            reason = (
                f"{len(tally.accepted)} accepted updates, fewer than "
                f"sampling.min_learners={spec.sampling.min_learners}; global model kept"
            )
        else:
            before = parts.server_opt.state_dict()
            before_transforms = self._transform_states()
            aggregate = parts.aggregator.result()
            aggregation_report = _report(parts.aggregator)
            for transform in parts.transforms:
                aggregate = transform.on_server(aggregate, reference=state.weights, ctx=ctx)
            candidate = parts.server_opt.step(current=state.weights, aggregate=aggregate)
            candidate_metrics = parts.evaluator.evaluate(candidate, round_)
            verdict = parts.guard.judge(candidate=candidate_metrics, stable=state.metrics)
            if verdict.accept:
                status = "completed"
                state.weights = candidate
                # A round that evaluated nothing keeps the last known metrics.
                state.metrics = candidate_metrics or state.metrics
            else:
                status = "rolled_back"
                reason = verdict.reason
                parts.server_opt.load_state_dict(before)
                self._load_transforms(before_transforms)
                state.rollbacks += 1
                self.callbacks.on_model_rolled_back(
                    ctx=ctx,
                    reason=reason or "",
                    candidate=candidate_metrics,
                    stable=dict(state.metrics),
                )

        parts.selector.observe(ctx=ctx, outcomes=tally.outcomes)
        if not parts.ledger_is_selectors:
            parts.ledger.update(round_, tally.outcomes)
        summary = RoundSummary(
            round=round_,
            status=status,  # type: ignore[arg-type]
            participants=selection.chosen,
            accepted=tuple(tally.accepted),
            rejected=tally.rejected,
            failed=tally.failed,
            train_loss=tally.train_loss(),
            candidate_metrics=candidate_metrics,
            global_metrics=dict(state.metrics),
            learner_metrics=tally.learner_metrics,
            duration=time.perf_counter() - started,
            bytes_sent=tally.bytes_sent,
            bytes_received=tally.bytes_received,
            reason=reason,
            selection_reasons=dict(selection.reasons),
            aggregation_weights=tally.factors,
            aggregation=aggregation_report,
            virtual_time=parts.fleet.virtual_time,
            learners_online=sum(info.available for info in learners),
        )
        state.round = round_
        state.history.append(summary.record())
        state.server_opt = parts.server_opt.state_dict()
        state.components = self._components()
        save_checkpoint(self.run_dir, state)
        self.callbacks.on_round_end(ctx=ctx, summary=summary)
        return state

    def _take(self, ctx: RoundContext, reply: Reply, reference: Weights, tally: RoundTally) -> None:
        """Validate one reply, weigh it and fold it in (or record why not)."""
        parts = self.parts
        tally.count_bytes(reply)
        if not reply.ok:
            tally.fail(reply)
            verdict = UpdateVerdict(False, reply.error, failed=True, duration=reply.duration)
            self.callbacks.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)
            return
        check = parts.validator.check(reply, reference)
        verdict = UpdateVerdict(
            check.ok,
            check.reason,
            num_examples=check.num_examples,
            metrics=reply.metrics,
            duration=reply.duration,
            bytes_sent=reply.bytes_sent,
            bytes_received=reply.bytes_received,
        )
        if not check.ok:
            tally.reject(reply, check.reason or "rejected")
            self.callbacks.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)
            return
        factors = parts.weighting.weigh(reply.learner, check.num_examples, reply.weights)
        update = Update(
            reply.learner,
            reply.weights,
            check.num_examples,
            reply.metrics,
            weight=factors.weight,
            extras=reply.extras,
        )
        parts.aggregator.add(update)
        tally.accept(reply, check.num_examples, factors, check.delta_norm)
        if parts.validator.has_cohort_checks:
            tally.held.append((reply.learner, verdict))  # judged again with its cohort
            if parts.transforms:
                tally.pending[reply.learner] = update
        else:
            self.callbacks.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)
            for transform in parts.transforms:
                transform.on_accepted(update, ctx=ctx)

    def _cohort_checks(self, ctx: RoundContext, tally: RoundTally) -> None:
        """Reject updates that only look wrong next to the rest of the round's."""
        outliers = self.parts.validator.cohort_outliers(tally.norms)
        for learner, reason in sorted(outliers.items()):
            self.parts.aggregator.exclude(learner, reason)
            tally.withdraw(learner, reason)
        for learner, verdict in tally.held:
            if learner in outliers:
                verdict = replace(verdict, accepted=False, reason=outliers[learner])
            self.callbacks.on_update(ctx=ctx, learner=learner, verdict=verdict)
        tally.held.clear()

    def _train_extras(
        self,
        learner: LearnerId,
        weights: Weights,
        ctx: RoundContext,
        shared: dict[tuple[tuple[str, int], ...], dict[str, Weights]],
    ) -> dict[str, Weights]:
        """What the transforms send ``learner`` beside the model; one dict object for
        learners sent the same arrays, so a fleet ships them once (RayFleet)."""
        extras: dict[str, Weights] = {}
        for transform in self.parts.transforms:
            extras.update(transform.train_extras(learner=learner, weights=weights, ctx=ctx))
        return shared.setdefault(tuple((k, id(v)) for k, v in extras.items()), extras)

    def _deadline_s(self) -> float | None:
        """The round deadline in the unit replies' durations are in (for lateness)."""
        simulation = self.spec.simulation
        if simulation is not None and simulation.deadline is not None:
            return simulation.deadline  # simulated seconds, like simulated durations
        if self.parts.fleet.virtual_time is not None:
            return None  # simulated durations, no simulated deadline: lateness unknown
        return self.spec.runtime.round_timeout

    def _config(self, round_: int) -> dict[str, bool | int | float | str]:
        """The round's train config, but for the learner's seed."""
        return train_config(TrainSettings.from_local(self.spec.local, seed=0), round_)


def _report(aggregator: Aggregator) -> dict[str, Any]:
    report = aggregator.last_report
    out: dict[str, Any] = {}
    if report.selected is not None:
        out["selected"] = list(report.selected)
    if report.clip_factors:
        out["clip_factors"] = dict(report.clip_factors)
    if report.byzantine is not None:
        out["byzantine"] = report.byzantine
    return out


__all__ = ["LearnerId", "RoundParts", "SyncOrchestrator"]
