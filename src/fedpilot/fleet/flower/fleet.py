"""FlowerFleet: learners on their own machines, reached through a Flower SuperLink.

It runs inside the ServerApp (the orchestrator is the ServerApp) and talks to the
SuperLink through Flower's ``Grid``. Replies are pulled with short polling and yielded
one by one as they arrive, so the orchestrator folds each into the aggregate at once;
``Grid.send_and_receive`` would sleep 3 s between polls and hand back only the full list.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from flwr.app import Message
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from fedpilot.deployment.tuning import quicker_object_pulls
from fedpilot.fleet._base import Fleet, FleetStopped
from fedpilot.fleet._convention import instruction_content, reply_from_message
from fedpilot.types import (
    FleetNotice,
    Instruction,
    LearnerId,
    LearnerInfo,
    Reply,
    weights_nbytes,
)

LIVENESS_CHECK_S = 1.0
"""How often a round re-reads who is online, to fail a learner that left at once."""
TIMEOUT = "timeout: no reply before the round deadline"
DISCONNECTED = "learner disconnected mid-round"
_SUPERLINK_ERRORS = {
    # The SuperLink answers for a learner whose message outlived its TTL (the round's
    # deadline) or who stopped sending heartbeats: what the learner did not do, in
    # fedpilot's words, not a learner's error.
    ErrorCode.MESSAGE_UNAVAILABLE: TIMEOUT,
    ErrorCode.REPLY_MESSAGE_UNAVAILABLE: TIMEOUT,
    ErrorCode.NODE_UNAVAILABLE: DISCONNECTED,
}


def learner_id(node_id: int, name: str) -> LearnerId:
    """A node's learner id: the name it was registered under (stable across restarts of
    that learner, so its history and the run's determinism carry over), else its node id."""
    return name or f"node-{node_id}"


class FlowerFleet(Fleet):
    """The learners connected to the SuperLink now, as Flower nodes.

    Args:
        grid: the ServerApp's Grid.
        poll_interval: seconds between pulls for replies.
        refusals: returns learners the SuperLink refused since it was last called
            (read from its log, :mod:`fedpilot.fleet.flower.refusals`).
    """

    def __init__(
        self,
        grid: Grid,
        *,
        poll_interval: float = 0.05,
        refusals: Callable[[], list[FleetNotice]] | None = None,
    ) -> None:
        self._grid = grid
        self._poll = poll_interval
        # A reply is pullable a moment before its arrays are; Flower would then wait 1 s.
        quicker_object_pulls(sys.modules[type(grid).__module__])
        self._refusals = refusals
        self._nodes: dict[LearnerId, int] = {}
        self._notices: list[FleetNotice] = []
        self._last_seen: set[LearnerId] = set()
        self._listed: set[LearnerId] = set()
        """Every id :meth:`learners` has listed: the ids ``dispatch`` accepts."""

    def online(self) -> dict[LearnerId, int]:
        """Learner id → node id of every learner connected now."""
        return {learner_id(n.node_id, n.name): n.node_id for n in self._grid.get_nodes()}

    def learners(self) -> Sequence[LearnerInfo]:
        self._nodes = self.online()
        now = set(self._nodes)
        self._notices += [FleetNotice("joined", lid) for lid in sorted(now - self._last_seen)]
        self._notices += [FleetNotice("left", lid) for lid in sorted(self._last_seen - now)]
        self._last_seen = now
        self._listed |= now
        # Sorted ids: the same learners give the same order, run after run and after a
        # resume, so seeded selection and per-learner seeds do not depend on node ids.
        return [LearnerInfo(id=lid) for lid in sorted(self._nodes)]

    def notices(self) -> list[FleetNotice]:
        if self._refusals is not None:
            self._notices += self._refusals()
        out, self._notices = self._notices, []
        return out

    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        unknown = sorted(lid for lid in instructions if lid not in self._listed)
        if unknown:
            raise KeyError(f"unknown learner {unknown[0]!r}: never listed by learners()")
        ttl = max(deadline - time.monotonic(), 1.0)
        order = [lid for lid in instructions if lid in self._nodes]
        for lid in (lid for lid in instructions if lid not in self._nodes):
            yield Reply(learner=lid, kind=instructions[lid].kind, error="learner is not connected")
        started = time.perf_counter()
        sent: dict[str, LearnerId] = {}
        if order:
            messages = [
                Message(
                    instruction_content(instructions[lid]),
                    dst_node_id=self._nodes[lid],
                    message_type=instructions[lid].kind,
                    ttl=ttl,
                    group_id=str(instructions[lid].config.get("server-round", "")),
                )
                for lid in order
            ]
            ids = list(self._grid.push_messages(messages))
            if not any(ids):
                # The SuperLink refuses every message of a run that is no longer running:
                # this ServerApp's run was stopped (its `fedpilot server` was interrupted,
                # or a resumed one stopped it). Not the learners' failure: end the run.
                raise FleetStopped(
                    "the SuperLink refused every message: this Flower run was stopped"
                )
            for lid, message_id in zip(order, ids, strict=True):
                if message_id:
                    sent[message_id] = lid
                else:
                    yield Reply(lid, instructions[lid].kind, error="the SuperLink refused it")
        yield from self._collect(sent, instructions, deadline, started)

    def _collect(
        self,
        pending: dict[str, LearnerId],
        instructions: Mapping[LearnerId, Instruction],
        deadline: float,
        started: float,
    ) -> Iterator[Reply]:
        next_liveness = time.monotonic() + LIVENESS_CHECK_S
        while pending and time.monotonic() < deadline:
            for message in self._grid.pull_messages(list(pending)):
                lid = pending.pop(message.metadata.reply_to_message_id, None)
                if lid is None:
                    continue
                if message.has_error() and message.error.code in _SUPERLINK_ERRORS:
                    reason = _SUPERLINK_ERRORS[message.error.code]
                    yield Reply(lid, instructions[lid].kind, error=reason)
                    continue
                reply = reply_from_message(lid, instructions[lid], message)
                yield _timed(reply, time.perf_counter() - started, instructions[lid])
            if pending and time.monotonic() >= next_liveness:
                next_liveness = time.monotonic() + LIVENESS_CHECK_S
                yield from self._drop_departed(pending, instructions)
            if pending:
                time.sleep(self._poll)
        for lid in pending.values():
            yield Reply(lid, instructions[lid].kind, error=TIMEOUT)

    def _drop_departed(
        self, pending: dict[str, LearnerId], instructions: Mapping[LearnerId, Instruction]
    ) -> Iterator[Reply]:
        """Fail the learners that disconnected while the round waits for them."""
        online = self.online()
        for message_id, lid in list(pending.items()):
            if online.get(lid) != self._nodes.get(lid):
                del pending[message_id]
                yield Reply(lid, instructions[lid].kind, error=DISCONNECTED)


def _timed(reply: Reply, seconds: float, instruction: Instruction) -> Reply:
    return replace(reply, duration=seconds, bytes_sent=weights_nbytes(instruction.weights))
