"""Fleet: how instructions reach learners. The orchestrator sees only this interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fedpilot.types import FleetNotice, Instruction, LearnerId, LearnerInfo, Reply


class FleetStopped(Exception):
    """The fleet's connection to its learners was ended from outside (the Flower run this
    fleet sends through was stopped): the round in progress cannot finish, and its
    replies must not be recorded as learners' failures. The run ends ``interrupted``,
    resumable from its last checkpoint."""


class Fleet(ABC):
    """Sends instructions and yields replies as they arrive.

    A learner that fails (raises, dies, misses the deadline) yields a Reply with
    ``error`` set; ``dispatch`` itself does not raise for a learner's failure.
    """

    @abstractmethod
    def learners(self) -> Sequence[LearnerInfo]:
        """Who is reachable now, in a stable order."""

    @abstractmethod
    def dispatch(
        self, instructions: Mapping[LearnerId, Instruction], *, deadline: float
    ) -> Iterator[Reply]:
        """Send every instruction; yield one Reply per instruction by ``deadline``
        (a ``time.monotonic()`` value), then stop.

        Each reply names its learner and the instruction's kind (``"train"``,
        ``"evaluate"`` or a custom ``"query.<action>"``); a learner that changed the
        instruction's ``state`` returns it as the reply's ``state``.

        Raises:
            KeyError: an instruction is addressed to an id :meth:`learners` never
                listed (raised before anything is sent). A listed learner that has
                left since is a failed Reply, not an error.
        """

    @property
    def replies_in_order(self) -> bool:
        """True if ``dispatch`` yields replies in instruction order, run after run.

        Aggregators may then fold in the fastest precision; otherwise they must make
        the result independent of arrival order to keep runs reproducible.
        """
        return False

    def notices(self) -> list[FleetNotice]:
        """Learners that joined, left or were refused since the last call (a fleet of
        real machines; a simulated fleet's membership is fixed)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for a resumed run to continue exactly (learners'
        simulated state, a simulated clock); numpy arrays allowed as leaves."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        del state

    @property
    def virtual_time(self) -> float | None:
        """Simulated seconds since the run began, when the fleet simulates time."""
        return None

    def lateness_deadline(self, round_timeout: float) -> float | None:
        """The deadline a reply's ``duration`` is judged against (its share of it is the
        learner's lateness), in the unit durations are in; None when unknown.

        Real durations are seconds against the round's timeout; a fleet that simulates
        time reports simulated durations and must say its own simulated deadline.
        """
        return round_timeout if self.virtual_time is None else None

    def close(self) -> None:
        """Release processes and connections; closing again does nothing."""

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
