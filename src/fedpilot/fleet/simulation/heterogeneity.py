"""HeterogeneousFleet: simulated compute speeds, availability, stragglers and a deadline.

Learners really run on this machine, but the wrapper decides *in simulated time* who
was online, who straggled and how long each learner took, and keeps a virtual clock
(simulated seconds since the start of the run). Everything is a pure function of the
seed, the round and the virtual clock, and the clock is in ``state_dict``, so a
resumed run behaves exactly as an uninterrupted one.

Rules, in the order they apply to one instruction:

1. A learner offline (by its trace) at the round's start fails at once:
   ``"unavailable: learner offline (simulated)"``.
2. Of a round's online trainers, ``stragglers.fraction`` (seeded per round) straggle:
   with ``drop`` they fail without running; with ``partial`` their ``local-epochs`` is
   rewritten to x of E (x uniform in 1..E−1, or a uniform fraction of E when E < 2).
3. With a ``deadline``, a trainer whose predicted duration (from its
   ``declared_examples``) exceeds it fails without running.
4. A trainer that ran takes ``epochs × num_examples × seconds_per_example / speed +
   latency`` simulated seconds (this replaces the reply's ``duration``); over the
   deadline it fails, and if its trace goes offline before it finishes it fails with
   ``"dropped out: went offline mid-round (simulated)"``.

After a dispatch with training instructions the clock advances by the round's time:
the longest any trainer kept the server waiting (a finished learner: its duration; one
that dropped out: until it went offline; one that missed a set deadline, or a straggler
dropped while one is set: the deadline). A round in which nobody ran idles until the
next availability change (at most the deadline), so a run cannot stall.
Evaluation dispatches are checked against availability and get simulated durations,
but do not advance the clock: how often a spec evaluates must not change who is online
when training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fedpilot.fleet._base import Fleet
from fedpilot.fleet.simulation._wrapper import (
    LOCAL_EPOCHS,
    FleetWrapper,
    epochs_of,
    failed,
    round_half_up,
)
from fedpilot.fleet.simulation.traces import AvailabilityTrace, SpeedModel
from fedpilot.spec.simulation import SimulationSpec, SpeedSpec
from fedpilot.types import Instruction, LearnerId, LearnerInfo, Reply, Scalar, derive_rng

UNAVAILABLE = "unavailable: learner offline (simulated)"
STRAGGLER_DROPPED = "straggler: dropped, missed the round deadline (simulated)"
DROPPED_OUT = "dropped out: went offline mid-round (simulated)"

# Without a speed section every learner runs at 1.0 with the section's default costs.
_DEFAULT_SPEED = SpeedSpec()


def deadline_reason(duration: float, deadline: float) -> str:
    """Why a learner slower than the round deadline was dropped."""
    return (
        f"deadline: simulated duration {duration:.4g} s exceeds the round deadline "
        f"{deadline:g} s (simulated)"
    )


@dataclass
class _Plan:
    """What one dispatch does before anything runs."""

    run: dict[LearnerId, Instruction] = field(default_factory=dict)
    early: dict[LearnerId, Reply] = field(default_factory=dict)
    waited: float = 0.0
    """Seconds the server waits for learners that will never answer (a set deadline)."""


class HeterogeneousFleet(FleetWrapper):
    """Simulated heterogeneity around a real fleet (see the module docstring).

    Args:
        inner: The fleet that really runs the learners.
        spec: The simulation section; its ``attack`` part is ignored here.
        seed: The run seed.
    """

    def __init__(self, inner: Fleet, spec: SimulationSpec, seed: int) -> None:
        super().__init__(inner)
        self.spec = spec
        self.seed = seed
        self._speeds = SpeedModel(spec.speed, seed, [info.id for info in inner.learners()])
        self._traces: dict[LearnerId, AvailabilityTrace] = {}
        self._clock = 0.0

    # ------------------------------------------------------------ inspection

    @property
    def virtual_time(self) -> float:
        """Simulated seconds since the start of the run."""
        return self._clock

    def lateness_deadline(self, round_timeout: float) -> float | None:
        # Durations here are simulated seconds: only a simulated deadline measures them.
        del round_timeout
        return self.spec.deadline

    def speed_of(self, learner: LearnerId) -> float:
        """The relative compute speed of ``learner`` (1.0 without a ``speed`` section)."""
        return self._speeds.of(learner)

    def trace_of(self, learner: LearnerId) -> AvailabilityTrace | None:
        """The availability trace of ``learner``; None without an ``availability`` section."""
        if self.spec.availability is None:
            return None
        if learner not in self._traces:
            self._traces[learner] = AvailabilityTrace.for_learner(
                self.spec.availability, self.seed, learner
            )
        return self._traces[learner]

    def is_available(self, learner: LearnerId, at: float | None = None) -> bool:
        """Whether ``learner`` is online at simulated time ``at`` (default: now)."""
        trace = self.trace_of(learner)
        return trace is None or trace.is_on(self._clock if at is None else at)

    def simulated_duration(self, learner: LearnerId, *, epochs: float, examples: float) -> float:
        """Simulated seconds ``learner`` takes for ``epochs`` passes over ``examples``."""
        speed = self.spec.speed or _DEFAULT_SPEED
        cost = epochs * examples * speed.seconds_per_example
        return cost / self.speed_of(learner) + speed.latency

    def learners(self) -> Sequence[LearnerInfo]:
        """The inner learners, ``available`` as their traces say at the current time."""
        return [
            replace(info, available=info.available and self.is_available(info.id))
            for info in self.inner.learners()
        ]

    def idle(self, seconds: float | None = None) -> float:
        """Let simulated time pass without a round; returns the new virtual time.

        Args:
            seconds: How long; None waits until the next availability change of any
                learner (nothing happens without traces).
        """
        if seconds is None:
            seconds = self._until_next_change()
        if seconds < 0:
            raise ValueError(f"`seconds` must be >= 0, got seconds={seconds}")
        self._clock += seconds
        return self._clock

    # ------------------------------------------------------------ dispatch

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        round_ = self._round_of(instructions)
        start = self._clock
        trains = not instructions or any(i.kind == "train" for i in instructions.values())
        plan = self._plan(instructions, round_, start)
        waits = [plan.waited]

        def settle(reply: Reply) -> Reply:
            instruction = plan.run[reply.learner]
            out, waited = self._settle(reply, instruction, start)
            if instruction.kind == "train":
                waits.append(waited)
            return out

        inner = self.inner.dispatch(plan.run, deadline=deadline) if plan.run else iter(())
        try:
            if self.inner.replies_in_order:
                yield from _in_order(list(instructions), plan.early, inner, settle)
            else:
                # Failures the simulation decides up front arrive first, as a real
                # fleet learns of offline nodes before any reply.
                yield from plan.early.values()
                for reply in inner:
                    yield settle(reply) if reply.learner in plan.run else reply
        finally:
            if trains:
                self._advance(max(waits))

    def _plan(
        self, instructions: Mapping[LearnerId, Instruction], round_: int, start: float
    ) -> _Plan:
        plan = _Plan()
        online = {learner: self.is_available(learner, start) for learner in instructions}
        stragglers = self._stragglers(
            [lid for lid, ins in instructions.items() if ins.kind == "train" and online[lid]],
            round_,
        )
        declared = {info.id: info.declared_examples for info in self.inner.learners()}
        limit = self.spec.deadline
        for learner, instruction in instructions.items():
            if not online[learner]:
                plan.early[learner] = failed(learner, instruction, UNAVAILABLE)
                continue
            if instruction.kind == "train":
                if learner in stragglers:
                    if self._straggler_policy() == "drop":
                        plan.early[learner] = failed(learner, instruction, STRAGGLER_DROPPED)
                        plan.waited = max(plan.waited, limit or 0.0)
                        continue
                    instruction = self._partial(learner, instruction, round_)
                examples = declared.get(learner)
                if limit is not None and examples is not None:
                    predicted = self.simulated_duration(
                        learner, epochs=epochs_of(instruction), examples=examples
                    )
                    if predicted > limit:
                        reason = deadline_reason(predicted, limit)
                        plan.early[learner] = failed(learner, instruction, reason)
                        plan.waited = limit
                        continue
            plan.run[learner] = instruction
        return plan

    def _straggler_policy(self) -> str:
        return "drop" if self.spec.stragglers is None else self.spec.stragglers.policy

    def _stragglers(self, trainers: list[LearnerId], round_: int) -> frozenset[LearnerId]:
        spec = self.spec.stragglers
        if spec is None or not trainers:
            return frozenset()
        # Sorted ids: who straggles must not depend on the order instructions came in.
        pool = sorted(trainers)
        count = min(len(pool), round_half_up(spec.fraction * len(pool)))
        picked = derive_rng(self.seed, round_, "stragglers").choice(
            len(pool), size=count, replace=False
        )
        return frozenset(pool[i] for i in picked.tolist())

    def _partial(self, learner: LearnerId, instruction: Instruction, round_: int) -> Instruction:
        """The instruction with ``local-epochs`` cut to a straggler's x of E."""
        epochs = epochs_of(instruction)
        rng = derive_rng(self.seed, round_, f"partial/{learner}")
        done: Scalar
        if epochs >= 2:
            done = int(rng.integers(1, math.ceil(epochs)))  # 1..ceil(E)-1, all below E
            if isinstance(instruction.config.get(LOCAL_EPOCHS), float):
                done = float(done)  # keep the value's type: a ClientApp may check it
        else:
            # 1 - U[0, 1) lies in (0, 1]: a straggler always does some work.
            done = epochs * (1.0 - float(rng.random()))
        return replace(instruction, config={**instruction.config, LOCAL_EPOCHS: done})

    def _settle(self, reply: Reply, instruction: Instruction, start: float) -> tuple[Reply, float]:
        """The reply as the simulation sees it, and how long it kept the server waiting."""
        if not reply.ok:
            return reply, 0.0  # the learner's own failure: when it happened is unknown
        examples = _examples(reply)
        epochs = epochs_of(instruction) if instruction.kind == "train" else 1.0
        took = self.simulated_duration(reply.learner, epochs=epochs, examples=examples)
        if instruction.kind != "train":
            return replace(reply, duration=took), 0.0
        limit = self.spec.deadline
        if limit is not None and took > limit:
            return _as_failed(reply, deadline_reason(took, limit), limit), limit
        trace = self.trace_of(reply.learner)
        offline = None if trace is None else trace.first_switch_between(start, start + took)
        if offline is not None:
            return _as_failed(reply, DROPPED_OUT, offline - start), offline - start
        return replace(reply, duration=took), took

    def _advance(self, round_time: float) -> None:
        if round_time <= 0:
            # Nobody ran (all offline, or dropped with no deadline to wait for): the
            # server idles until something changes, else the run would never move on.
            round_time = self._until_next_change()
            if self.spec.deadline is not None:
                round_time = min(round_time, self.spec.deadline)
        self._clock += round_time

    def _until_next_change(self) -> float:
        if self.spec.availability is None:
            return 0.0
        changes = []
        for info in self.inner.learners():
            trace = self.trace_of(info.id)
            if trace is not None:
                changes.append(trace.next_switch(self._clock))
        return min(changes) - self._clock if changes else 0.0

    # ------------------------------------------------------------ state

    def _own_state(self) -> dict[str, Any]:
        return {"virtual_time": self._clock}

    def _load_own_state(self, state: Mapping[str, Any]) -> None:
        self._clock = float(state.get("virtual_time", 0.0))


def _examples(reply: Reply) -> float:
    n = reply.num_examples
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
        return 0.0  # the validator rejects such a claim; its time is not the point
    return float(n)


def _as_failed(reply: Reply, reason: str, duration: float) -> Reply:
    """A reply that ran but does not count: the model went out, nothing came back."""
    return Reply(
        learner=reply.learner,
        kind=reply.kind,
        error=reason,
        duration=duration,
        bytes_sent=reply.bytes_sent,
    )


def _in_order(
    order: list[LearnerId],
    early: Mapping[LearnerId, Reply],
    inner: Iterator[Reply],
    settle: Callable[[Reply], Reply],
) -> Iterator[Reply]:
    """Merge the up-front failures into an in-order inner stream, keeping instruction order
    (so ``replies_in_order`` stays true through the wrapper)."""
    pending: dict[LearnerId, Reply] = {}
    for learner in order:
        if learner in early:
            yield early[learner]
            continue
        while learner not in pending:
            reply = next(inner, None)
            if reply is None:
                break
            pending[reply.learner] = reply
        if learner in pending:
            yield settle(pending.pop(learner))
    # An inner fleet that broke its promise: pass whatever is left through, settled.
    for reply in [*pending.values(), *inner]:
        yield settle(reply) if reply.learner in order and reply.learner not in early else reply
