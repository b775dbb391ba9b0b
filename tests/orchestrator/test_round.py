"""The round loop with small fake parts: a fleet whose replies are scripted, an evaluator
that scores a model by its distance to a target, and the real validator, fold, server
steps and guard. No task, no Flower, no files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from fedpilot.aggregation import FedAvgM, FedAvgStep, ServerOptimizer, WeightedMean
from fedpilot.aggregation.weighting import UpdateWeighting
from fedpilot.fleet import Fleet, FleetStopped
from fedpilot.guard import AcceptAll, Guard, RelativeDropGuard
from fedpilot.ledger import ParticipationLog
from fedpilot.orchestrator import (
    Callback,
    Federation,
    LearnerStates,
    Phase,
    Round,
    RoundParts,
    RoundSettings,
    RunInfo,
    RunState,
    StateRegistry,
    UpdateVerdict,
    load_checkpoint,
)
from fedpilot.selection import AvailableSelector
from fedpilot.spec.sections import FedAvgMStrategy, SamplingSpec, WeightingSpec
from fedpilot.transforms import Exchange, UpdateTransform
from fedpilot.types import (
    Instruction,
    LearnerId,
    LearnerInfo,
    Metrics,
    Reply,
    RoundContext,
    Weights,
)
from fedpilot.validation import UpdateValidator

START: Weights = [np.zeros(3, np.float32)]


class ScriptedFleet(Fleet):
    """Learner ``x`` trains to ``weights + offsets[x]``; ``fail`` learners error, ``nan``
    ones reply NaNs, ``refuse`` ones fail every custom phase. Records what it was sent."""

    def __init__(
        self,
        offsets: Mapping[LearnerId, float],
        *,
        fail: Sequence[LearnerId] = (),
        nan: Sequence[LearnerId] = (),
        refuse: Sequence[LearnerId] = (),
    ) -> None:
        self.offsets = dict(offsets)
        self.fail, self.nan, self.refuse = set(fail), set(nan), set(refuse)
        self.sent: list[tuple[str, list[LearnerId]]] = []

    def learners(self) -> Sequence[LearnerInfo]:
        return [LearnerInfo(id=x, partition=i) for i, x in enumerate(self.offsets)]

    @property
    def replies_in_order(self) -> bool:
        return True

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        kinds = {ins.kind for ins in instructions.values()}
        self.sent.append((kinds.pop() if kinds else "", list(instructions)))
        for learner, ins in instructions.items():
            if ins.kind != "train":
                if learner in self.refuse:
                    yield Reply(learner=learner, kind=ins.kind, error="went away")
                else:
                    yield Reply(learner=learner, kind=ins.kind, metrics={"ok": 1.0})
                continue
            if learner in self.fail:
                yield Reply(learner=learner, kind="train", error="learner raised OSError: disk")
                continue
            shift = np.nan if learner in self.nan else self.offsets[learner]
            weights = [(w + shift).astype(w.dtype) for w in ins.weights]
            yield Reply(
                learner=learner,
                kind="train",
                weights=weights,
                metrics={"loss": 0.1},
                num_examples=10,
                state={"fake/seen": [np.array([ins.config["server-round"]])]},
            )


class DistanceScore:
    """``score`` = −‖w − target‖: higher is better; the guard watches it."""

    def __init__(self, target: float) -> None:
        self.target = target

    def evaluate(self, weights: Weights, round_: int) -> Metrics:
        return {"score": -float(np.abs(weights[0] - self.target).sum())}

    def take_refused(self) -> list[tuple[int, str, str]]:
        return []  # no evaluation replies to refuse


class Recorder(Callback):
    def __init__(self) -> None:
        self.verdicts: dict[LearnerId, UpdateVerdict] = {}
        self.rolled_back: list[str] = []
        self.warnings: list[str] = []

    def on_update(self, *, ctx: RoundContext, learner: LearnerId, verdict: UpdateVerdict) -> None:
        self.verdicts[learner] = verdict

    def on_model_rolled_back(
        self, *, ctx: RoundContext, reason: str, candidate: Metrics, stable: Metrics
    ) -> None:
        self.rolled_back.append(reason)

    def on_warning(self, *, round: int, code: str, message: str) -> None:
        self.warnings.append(message)


def make_round(
    fleet: ScriptedFleet,
    *,
    server_opt: ServerOptimizer | None = None,
    guard: Guard | None = None,
    target: float = 1.0,
    min_learners: int = 1,
    transforms: Sequence[UpdateTransform] = (),
) -> tuple[Round, Recorder, RoundParts]:
    ledger = ParticipationLog()
    selector = AvailableSelector()
    selector.use_ledger(ledger)
    parts = RoundParts(
        fleet=fleet,
        selector=selector,
        aggregator=WeightedMean(),
        server_opt=server_opt or FedAvgStep(),
        validator=UpdateValidator(),
        weighting=UpdateWeighting(WeightingSpec(), ledger),
        guard=guard or AcceptAll(),
        evaluator=DistanceScore(target),  # type: ignore[arg-type]
        ledger=ledger,
        transforms=transforms,
        learner_states=LearnerStates(),
    )
    registry = StateRegistry()
    registry.register("server_opt", parts.server_opt, rollback=True)
    settings = RoundSettings(
        total_rounds=5,
        seed=1,
        sampling=SamplingSpec(fraction=1.0, min_learners=min_learners),
        round_timeout=60,
        train_config={},
    )
    recorder = Recorder()
    return Round(parts, settings, events=recorder, state=registry, run_id="r"), recorder, parts


def fresh_state() -> RunState:
    return RunState(round=0, weights=[w.copy() for w in START], metrics={})


def test_accepted_updates_are_folded_and_failures_and_rejections_are_recorded() -> None:
    fleet = ScriptedFleet({"a": 1.0, "b": 3.0, "c": 5.0, "d": 2.0}, fail=["b"], nan=["c"])
    round_, recorder, parts = make_round(fleet)
    state = fresh_state()
    round_.begin(state)
    ctx, summary = round_.run(state)
    assert (ctx.round, summary.status) == (1, "completed")
    assert summary.accepted == ("a", "d")
    assert set(summary.failed) == {"b"} and "disk" in summary.failed["b"]
    assert set(summary.rejected) == {"c"}
    np.testing.assert_allclose(state.weights[0], [1.5, 1.5, 1.5])  # mean of +1 and +2
    assert state.round == 1 and len(state.history) == 1
    assert not recorder.verdicts["c"].accepted and recorder.verdicts["b"].failed
    # Each learner's state came back with its reply and goes out with the next round.
    assert parts.learner_states.get("a")["fake/seen"][0].tolist() == [1]
    assert parts.learner_states.get("b") == {}  # a failed reply changes nothing
    assert parts.ledger.get("b") is not None and parts.ledger.get("b").failed == 1


def test_a_rolled_back_round_keeps_the_model_and_restores_the_server_state() -> None:
    fleet = ScriptedFleet({"a": 1.0, "b": 1.0})
    momentum = FedAvgM(FedAvgMStrategy(momentum=0.9))
    guard = RelativeDropGuard("score", "max", 0.1)
    round_, recorder, _ = make_round(fleet, server_opt=momentum, guard=guard, target=1.0)
    state = fresh_state()
    round_.begin(state)
    _, first = round_.run(state)  # 0 → 1: onto the target
    assert first.status == "completed"
    kept = momentum.state_dict()
    fleet.offsets = {"a": 5.0, "b": 5.0}  # far away from it: the score drops a lot
    _, second = round_.run(state)
    assert second.status == "rolled_back" and recorder.rolled_back
    np.testing.assert_allclose(state.weights[0], [1.0, 1.0, 1.0])  # round 1's model
    assert state.rollbacks == 1 and second.global_metrics == first.global_metrics
    for name, value in kept.items():
        np.testing.assert_array_equal(momentum.state_dict()[name], value)


def test_too_few_accepted_updates_fail_the_round_and_keep_the_model() -> None:
    fleet = ScriptedFleet({"a": 1.0, "b": 1.0, "c": 1.0}, fail=["b", "c"])
    round_, _, _ = make_round(fleet, min_learners=2)
    state = fresh_state()
    round_.begin(state)
    _, summary = round_.run(state)
    assert summary.status == "failed" and "fewer than sampling.min_learners=2" in str(
        summary.reason
    )
    np.testing.assert_array_equal(state.weights[0], START[0])


def test_a_guard_that_cannot_judge_is_turned_off_before_round_1_with_a_warning() -> None:
    round_, _, parts = make_round(
        ScriptedFleet({"a": 1.0}), guard=RelativeDropGuard("accuracy", "max", 0.1)
    )
    warnings = round_.begin(fresh_state())
    assert len(warnings) == 1 and "'accuracy'" in warnings[0]
    assert isinstance(parts.guard, AcceptAll)


class _Handshake(Phase):
    kind = "query.handshake"

    def __init__(self, after: bool) -> None:
        self.after = after
        self.cohorts: list[list[LearnerId]] = []
        self.dropped_learners: list[LearnerId] = []

    @property
    def after_training(self) -> bool:  # type: ignore[override]
        return self.after

    def requests(
        self, *, cohort: Sequence[LearnerId], ctx: RoundContext
    ) -> Mapping[LearnerId, Exchange]:
        self.cohorts.append(list(cohort))
        return dict.fromkeys(cohort, Exchange())

    def take(self, learner: LearnerId, reply: Exchange, *, ctx: RoundContext) -> str | None:
        return None if reply.metrics.get("ok") == 1.0 else "no ok"

    def dropped(self, learner: LearnerId, reason: str, *, ctx: RoundContext) -> None:
        self.dropped_learners.append(learner)


class _TwoHandshakes(UpdateTransform):
    name = "handshakes"

    def __init__(self) -> None:
        self.before, self.after = _Handshake(False), _Handshake(True)

    def phases(self, *, ctx: RoundContext) -> Sequence[Phase]:
        return (self.before, self.after)


def test_a_learner_dropped_in_a_phase_is_not_trained_and_later_phases_see_the_rest() -> None:
    fleet = ScriptedFleet({"a": 1.0, "b": 1.0, "c": 1.0}, refuse=["b"], fail=["c"])
    handshakes = _TwoHandshakes()
    round_, _, _ = make_round(fleet, transforms=[handshakes])
    state = fresh_state()
    round_.begin(state)
    _, summary = round_.run(state)
    assert fleet.sent == [
        ("query.handshake", ["a", "b", "c"]),
        ("train", ["a", "c"]),  # b dropped before training
        ("query.handshake", ["a"]),  # c failed its training: not asked again
    ]
    assert handshakes.before.dropped_learners == ["b"]
    assert summary.failed["b"].startswith("dropped in query.handshake")
    assert summary.accepted == ("a",)


class _StoppedAfter(ScriptedFleet):
    """The fleet's run is stopped from outside once ``rounds`` dispatches went out."""

    def __init__(self, offsets: Mapping[LearnerId, float], rounds: int) -> None:
        super().__init__(offsets)
        self.rounds = rounds

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        if len(self.sent) >= self.rounds:
            raise FleetStopped("the SuperLink refused every message: this Flower run was stopped")
        yield from super().dispatch(instructions, deadline=deadline)


def test_a_fleet_stopped_from_outside_interrupts_the_run_without_recording_the_round(
    tmp_path: Path,
) -> None:
    """A stopped Flower run refuses the round's messages: that is no learner's failure,
    so the round is not recorded and the run ends interrupted at its last checkpoint."""
    round_, _, _ = make_round(_StoppedAfter({"a": 1.0, "b": 2.0}, rounds=1))
    registry = StateRegistry()
    run = RunInfo(run_id="r", run_dir=tmp_path, spec=None)  # type: ignore[arg-type]
    federation = Federation(
        round=round_, state=fresh_state(), registry=registry, callbacks=Callback(), run=run
    )
    result = federation.run()
    assert result.status == "interrupted" and "Flower run was stopped" in str(result.error)
    assert result.rounds_completed == 1 and len(result.history) == 1
    assert load_checkpoint(tmp_path).round == 1
