"""One synchronous round's computation: select → exchanges with the cohort (phases before
training, training with each reply validated and folded as it arrives, phases after) →
cohort checks → server stage → server step → evaluate → guard.

No checkpoint and no persistence here: the driver (:mod:`.federation`) does that around
each round. What happens is told to ``events`` as it happens (an update accepted, a
model rolled back), so a live view can follow a long round. An asynchronous or
hierarchical driver reuses these parts without flags in this loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fedpilot.aggregation import Aggregator, ServerOptimizer
from fedpilot.aggregation.weighting import UpdateWeighting
from fedpilot.fleet import Fleet
from fedpilot.guard import AcceptAll, Guard
from fedpilot.learner.protocol import SERVER_ROUND
from fedpilot.ledger import ParticipationLog
from fedpilot.orchestrator._tally import RoundTally
from fedpilot.orchestrator.checkpoint import RunState
from fedpilot.orchestrator.evaluation import Evaluator
from fedpilot.orchestrator.events import Callback, RoundSummary, UpdateVerdict
from fedpilot.orchestrator.intake import UpdateIntake, overriding
from fedpilot.orchestrator.phases import Phase
from fedpilot.orchestrator.state import LearnerStates, StateRegistry
from fedpilot.privacy.dpsgd import privacy_spent
from fedpilot.selection import Selector
from fedpilot.spec.sections import SamplingSpec
from fedpilot.transforms import AggregationFailed, Exchange, UpdateTransform
from fedpilot.types import (
    Config,
    Instruction,
    LearnerId,
    LearnerInfo,
    Metrics,
    Reply,
    RoundContext,
    Weights,
    derive_rng,
    derive_seed,
)
from fedpilot.validation import UpdateValidator


@dataclass(frozen=True)
class RoundSettings:
    """The few facts of the spec a round needs, each from its own section."""

    total_rounds: int
    seed: int
    sampling: SamplingSpec
    round_timeout: float
    train_config: Config
    """The train instruction's config but for the round and the learner's seed."""


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
    """Every learner's track record (adaptive weighting and logging selectors read it),
    updated once a round with the round's outcomes."""
    transforms: Sequence[UpdateTransform] = ()
    """The update transforms' server halves, in chain order."""
    learner_states: LearnerStates = field(default_factory=LearnerStates)


class Round:
    """Runs rounds over ``parts``; call :meth:`run` once per round.

    Args:
        parts: The round's components.
        settings: What the spec says about rounds.
        events: Told what happens during the round (``on_round_start``, ``on_update``,
            ``on_model_rolled_back``, ``on_fleet_notice``).
        state: The registry whose rollback parts return to their pre-round state when
            the guard rolls a round back.
    """

    def __init__(
        self,
        parts: RoundParts,
        settings: RoundSettings,
        *,
        events: Callback,
        state: StateRegistry,
        run_id: str,
    ) -> None:
        self.parts = parts
        self.settings = settings
        self.events = events
        self.state = state
        self.run_id = run_id
        # Hooks a transform does not override cost nothing per update.
        self._extras_from = overriding(parts.transforms, "train_extras")
        self._intake = UpdateIntake(parts, events)
        self._server_stages = overriding(parts.transforms, "on_server")
        self._downloading = overriding(parts.transforms, "on_download")
        # Secure aggregation: replies carry no readable update; its transform sums them.
        self._sealer = self._intake.sealer

    def begin(self, state: RunState) -> list[str]:
        """Before the first round of this process: evaluate the initial model (the first
        stable model the guard compares with) and decide whether the guard can judge this
        run at all. Returns warnings for a person; the run goes on either way."""
        parts = self.parts
        if state.round == 0 and not state.metrics:
            state.metrics = parts.evaluator.evaluate(state.weights, 0)
            parts.guard.set_initial(state.metrics)
        unusable = parts.guard.unusable_with(state.metrics)
        if unusable is None:
            return []
        parts.guard = AcceptAll()
        return [unusable]

    def run(self, state: RunState) -> tuple[RoundContext, RoundSummary]:
        """Round ``state.round + 1``; updates ``state`` (model, metrics, history) at its end."""
        parts, settings = self.parts, self.settings
        round_ = state.round + 1
        started = time.perf_counter()
        learners = list(parts.fleet.learners())
        for notice in parts.fleet.notices():
            self.events.on_fleet_notice(round=round_, notice=notice)
        ctx = RoundContext(
            run_id=self.run_id,
            round=round_,
            total_rounds=settings.total_rounds,
            seed=settings.seed,
            num_learners=len(learners),
        )
        selection = parts.selector.select(
            candidates=learners,
            size=settings.sampling.size(len(learners)),
            ctx=ctx,
            rng=derive_rng(settings.seed, round_, "sampling"),
        )
        self.events.on_round_start(ctx=ctx, participants=selection.chosen)

        tally = RoundTally(deadline_s=parts.fleet.lateness_deadline(settings.round_timeout))
        phases = [p for t in parts.transforms for p in t.phases(ctx=ctx)]
        cohort: Sequence[LearnerId] = selection.chosen
        for phase in phases:
            if not phase.after_training:
                cohort = self._exchange(phase, cohort, ctx, tally)
        self._train(ctx, cohort, learners, state.weights, tally)
        if self._sealer is None:
            self._intake.cohort_checks(ctx, tally)
        cohort = tuple(tally.accepted)
        for phase in phases:
            if phase.after_training:
                cohort = self._exchange(phase, cohort, ctx, tally)

        weights, metrics, rollbacks = state.weights, state.metrics, state.rollbacks
        candidate_metrics: Metrics = {}
        aggregation_report: dict[str, Any] = {}
        reason: str | None = None
        if len(tally.accepted) < settings.sampling.min_learners:
            status = "failed"
            reason = (
                f"{len(tally.accepted)} accepted updates, fewer than "
                f"sampling.min_learners={settings.sampling.min_learners}; global model kept"
            )
        elif isinstance(unsealed := self._unseal(ctx, weights), str):
            status, reason = "failed", unsealed
        else:
            before = self.state.snapshot()
            aggregate = unsealed
            if self._sealer is None:
                aggregation_report = parts.aggregator.last_report.summary()
            for transform in self._server_stages:
                aggregate = transform.on_server(aggregate, reference=weights, ctx=ctx)
            candidate = parts.server_opt.step(current=weights, aggregate=aggregate)
            candidate_metrics = parts.evaluator.evaluate(candidate, round_)
            verdict = parts.guard.judge(candidate=candidate_metrics, stable=metrics)
            if verdict.accept:
                status = "completed"
                weights = candidate
                # A round that evaluated nothing keeps the last known metrics.
                metrics = candidate_metrics or metrics
                if verdict.reason:  # accepted unjudged: say why
                    self.events.on_warning(round=round_, code="guard", message=verdict.reason)
            else:
                status = "rolled_back"
                reason = verdict.reason
                self.state.roll_back(before)
                rollbacks += 1
                self.events.on_model_rolled_back(
                    ctx=ctx, reason=reason or "", candidate=candidate_metrics, stable=dict(metrics)
                )

        for told, code, message in parts.evaluator.take_refused():
            self.events.on_warning(round=told, code=code, message=message)
        # The ledger first: a logging selector reads (Oort even amends) the updated record.
        parts.ledger.update(round_, tally.outcomes)
        parts.selector.observe(ctx=ctx, outcomes=tally.outcomes)
        summary = RoundSummary(
            round=round_,
            status=status,  # type: ignore[arg-type]
            participants=selection.chosen,
            accepted=tuple(tally.accepted),
            rejected=tally.rejected,
            failed=tally.failed,
            train_loss=tally.train_loss(),
            candidate_metrics=candidate_metrics,
            global_metrics=dict(metrics),
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
            privacy=privacy_spent(parts.transforms),
        )
        # The run's state changes only here, all at once: an interrupted round leaves it
        # as the last checkpoint has it.
        state.weights, state.metrics, state.rollbacks = weights, metrics, rollbacks
        state.round = round_
        state.history.append(summary.record())
        return ctx, summary

    def _unseal(self, ctx: RoundContext, reference: Weights) -> Weights | str:
        """The round's aggregate, or why there is none (secure aggregation below its
        threshold: the global model is kept and nothing is revealed)."""
        if self._sealer is None:
            return self.parts.aggregator.result()
        try:
            return self._sealer.sealed_aggregate(reference=reference, ctx=ctx)
        except AggregationFailed as exc:
            self.events.on_secure_aggregation_failed(round=ctx.round, reason=str(exc))
            return str(exc)

    # -- the training exchange ---------------------------------------------------------

    def _train(
        self,
        ctx: RoundContext,
        cohort: Sequence[LearnerId],
        learners: Sequence[LearnerInfo],
        weights: Weights,
        tally: RoundTally,
    ) -> None:
        parts, settings = self.parts, self.settings
        position = {info.id: i for i, info in enumerate(learners)}
        config = {**settings.train_config, SERVER_ROUND: ctx.round}
        states, seed, round_ = parts.learner_states, settings.seed, ctx.round
        shared: dict[tuple[tuple[str, int], ...], dict[str, Weights]] = {}
        sent = weights
        for transform in self._downloading:
            sent = transform.on_download(sent, ctx=ctx)
        instructions = {
            learner: Instruction(
                "train",
                sent,
                # Learner i's own seed for this round: the same whoever else takes part.
                {
                    **config,
                    "seed": derive_seed(seed, round_, "local-training", position[learner]),
                },
                self._extras(learner, weights, ctx, shared),
                states.get(learner),
            )
            for learner in cohort
        }
        parts.aggregator.begin(reference=weights, ctx=ctx)
        parts.weighting.begin_round(weights)
        deadline = time.monotonic() + settings.round_timeout
        for reply in parts.fleet.dispatch(instructions, deadline=deadline):
            if reply.state is not None:
                states.keep(reply.learner, reply.state)
            self._intake.take(ctx, reply, weights, tally)

    def _extras(
        self,
        learner: LearnerId,
        weights: Weights,
        ctx: RoundContext,
        shared: dict[tuple[tuple[str, int], ...], dict[str, Weights]],
    ) -> dict[str, Weights]:
        """What the transforms send ``learner`` beside the model: one dict object for the
        learners sent the same arrays, so a fleet ships them once (RayFleet does)."""
        extras: dict[str, Weights] = {}
        for transform in self._extras_from:
            extras.update(transform.train_extras(learner=learner, weights=weights, ctx=ctx))
        return shared.setdefault(tuple((k, id(v)) for k, v in extras.items()), extras)

    # -- other exchanges ---------------------------------------------------------------

    def _exchange(
        self, phase: Phase, cohort: Sequence[LearnerId], ctx: RoundContext, tally: RoundTally
    ) -> tuple[LearnerId, ...]:
        """One phase with the learners still in the round; returns those who stay."""
        states = self.parts.learner_states
        requests = phase.requests(cohort=cohort, ctx=ctx)
        instructions = {
            learner: Instruction(
                phase.kind,
                [],
                {**request.config, SERVER_ROUND: ctx.round},
                dict(request.arrays),
                states.get(learner),
            )
            for learner, request in requests.items()
        }
        staying: set[LearnerId] = set()
        deadline = time.monotonic() + self.settings.round_timeout
        for reply in self.parts.fleet.dispatch(instructions, deadline=deadline):
            tally.count_bytes(reply)
            reason = reply.error
            if reason is None:
                states.keep(reply.learner, reply.state)
                answer = Exchange(arrays=reply.extras, metrics=reply.metrics)
                reason = phase.take(reply.learner, answer, ctx=ctx)
            if reason is None:
                staying.add(reply.learner)
                continue
            reason = f"dropped in {phase.kind}: {reason}"
            phase.dropped(reply.learner, reason, ctx=ctx)
            self._drop(ctx, reply.learner, reason, tally)
        for learner in cohort:
            if learner not in requests:
                continue
            if learner not in staying and learner not in tally.failed:
                reason = f"dropped in {phase.kind}: no reply"
                phase.dropped(learner, reason, ctx=ctx)
                self._drop(ctx, learner, reason, tally)
        return tuple(learner for learner in cohort if learner in staying)

    def _drop(self, ctx: RoundContext, learner: LearnerId, reason: str, tally: RoundTally) -> None:
        if learner in tally.accepted:
            # Its update is already in the aggregate (a streaming fold cannot take it out,
            # and a protocol such as secure aggregation recovers from exactly this): it
            # stays accepted and only leaves the remaining phases.
            self.events.on_warning(
                round=ctx.round, code="learner-dropped", message=f"learner {learner} {reason}"
            )
            return
        tally.fail(Reply(learner=learner, kind="query", error=reason))
        verdict = UpdateVerdict(False, reason, failed=True)
        self.events.on_update(ctx=ctx, learner=learner, verdict=verdict)
