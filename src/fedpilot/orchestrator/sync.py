"""The synchronous round loop: select → send → fold → server step → evaluate → guard →
checkpoint → events. Nothing else lives here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fedpilot.aggregation import Aggregator, ServerOptimizer
from fedpilot.fleet import Fleet
from fedpilot.guard import Guard
from fedpilot.learner.protocol import train_config
from fedpilot.orchestrator.checkpoint import RunState, save_checkpoint
from fedpilot.orchestrator.evaluation import Evaluator
from fedpilot.orchestrator.events import (
    Callback,
    RoundSummary,
    RunInfo,
    RunResult,
    UpdateVerdict,
)
from fedpilot.privacy import UpdateValidator
from fedpilot.spec import FederationSpec, FedProxStrategy
from fedpilot.tasks._base import TrainSettings
from fedpilot.types import (
    Instruction,
    LearnerId,
    Metrics,
    RoundContext,
    Update,
    derive_rng,
    derive_seed,
)


@dataclass
class RoundParts:
    """The pluggable pieces one round is made of."""

    fleet: Fleet
    aggregator: Aggregator
    server_opt: ServerOptimizer
    validator: UpdateValidator
    guard: Guard
    evaluator: Evaluator


class SyncOrchestrator:
    def __init__(
        self, spec: FederationSpec, parts: RoundParts, callbacks: Callback, run: RunInfo
    ) -> None:
        self.spec = spec
        self.parts = parts
        self.callbacks = callbacks
        self.run_info = run

    @property
    def run_dir(self) -> Path:
        return self.run_info.run_dir

    def run(self, state: RunState) -> RunResult:
        """Rounds ``state.round + 1`` to ``spec.rounds``; returns however the run ended."""
        self.parts.server_opt.load_state_dict(state.server_opt)
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
        ctx = RoundContext(
            run_id=self.run_info.run_id, round=round_, total_rounds=spec.rounds, seed=spec.seed
        )
        learners = list(parts.fleet.learners())
        rng = derive_rng(spec.seed, round_, "sampling")
        size = spec.sampling.size(len(learners))
        picked = sorted(rng.choice(len(learners), size=size, replace=False).tolist())
        chosen = tuple(learners[i].id for i in picked)
        self.callbacks.on_round_start(ctx=ctx, participants=chosen)

        instructions = {
            learner: Instruction("train", state.weights, self._config(round_, index))
            for learner, index in zip(chosen, picked, strict=True)
        }
        parts.aggregator.begin(reference=state.weights, ctx=ctx)
        accepted: list[LearnerId] = []
        rejected: dict[LearnerId, str] = {}
        failed: dict[LearnerId, str] = {}
        learner_metrics: dict[LearnerId, Metrics] = {}
        loss_sum = loss_weight = 0.0
        sent = received = 0
        deadline = time.monotonic() + spec.runtime.round_timeout
        for reply in parts.fleet.dispatch(instructions, deadline=deadline):
            sent += reply.bytes_sent
            received += reply.bytes_received
            if not reply.ok:
                failed[reply.learner] = reply.error or "failed"
                verdict = UpdateVerdict(False, reply.error, failed=True, duration=reply.duration)
            else:
                check = parts.validator.check(reply, state.weights)
                verdict = UpdateVerdict(
                    check.ok,
                    check.reason,
                    num_examples=check.num_examples,
                    metrics=reply.metrics,
                    duration=reply.duration,
                    bytes_sent=reply.bytes_sent,
                    bytes_received=reply.bytes_received,
                )
                if check.ok:
                    parts.aggregator.add(
                        Update(reply.learner, reply.weights, check.num_examples, reply.metrics)
                    )
                    accepted.append(reply.learner)
                    learner_metrics[reply.learner] = {
                        **reply.metrics,
                        "num_examples": float(check.num_examples),
                        "duration_s": reply.duration,
                    }
                    if "loss" in reply.metrics:
                        loss_sum += check.num_examples * reply.metrics["loss"]
                        loss_weight += check.num_examples
                else:
                    rejected[reply.learner] = check.reason or "rejected"
            self.callbacks.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)

        candidate_metrics: Metrics = {}
        reason: str | None = None
        if len(accepted) < spec.sampling.min_learners:
            status = "failed"
            reason = (
                f"{len(accepted)} accepted updates, fewer than "
                f"sampling.min_learners={spec.sampling.min_learners}; global model kept"
            )
        else:
            before = parts.server_opt.state_dict()
            candidate = parts.server_opt.step(
                current=state.weights, aggregate=parts.aggregator.result()
            )
            candidate_metrics = parts.evaluator.evaluate(candidate, round_)
            verdict_ = parts.guard.judge(candidate=candidate_metrics, stable=state.metrics)
            if verdict_.accept:
                status = "completed"
                state.weights = candidate
                # A round that evaluated nothing keeps the last known metrics.
                state.metrics = candidate_metrics or state.metrics
            else:
                status = "rolled_back"
                reason = verdict_.reason
                parts.server_opt.load_state_dict(before)
                state.rollbacks += 1
                self.callbacks.on_model_rolled_back(
                    ctx=ctx,
                    reason=reason or "",
                    candidate=candidate_metrics,
                    stable=dict(state.metrics),
                )

        duration = time.perf_counter() - started
        train_loss = loss_sum / loss_weight if loss_weight else None
        summary = RoundSummary(
            round=round_,
            status=status,  # type: ignore[arg-type]
            participants=chosen,
            accepted=tuple(accepted),
            rejected=rejected,
            failed=failed,
            train_loss=train_loss,
            candidate_metrics=candidate_metrics,
            global_metrics=dict(state.metrics),
            learner_metrics=learner_metrics,
            duration=duration,
            bytes_sent=sent,
            bytes_received=received,
            reason=reason,
        )
        state.round = round_
        state.history.append(summary.record())
        state.server_opt = parts.server_opt.state_dict()
        save_checkpoint(self.run_dir, state)
        self.callbacks.on_round_end(ctx=ctx, summary=summary)
        return state

    def _config(self, round_: int, learner_index: int) -> dict[str, bool | int | float | str]:
        strategy = self.spec.strategy
        settings = TrainSettings.from_local(
            self.spec.local,
            seed=derive_seed(self.spec.seed, round_, "local-training", learner_index),
            proximal_mu=strategy.mu if isinstance(strategy, FedProxStrategy) else 0.0,
        )
        return train_config(settings, round_)
