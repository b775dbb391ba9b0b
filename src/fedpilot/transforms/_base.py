"""UpdateTransform: a paired learner-side and server-side stage every update passes.

Like pfl-research's postprocessors (``postprocess_one_user`` + ``postprocess_server``), one
class holds both halves, so the learner's change to an update and the server's answer to
it live together: system metrics, simulated attacks, SCAFFOLD's control variates,
FedProx's proximal term, and next DP clipping and noise, codecs and secure aggregation.

The learner half runs wherever fedpilot's learner runs (in-process, in a worker process,
as a Ray task, behind the Flower ClientApp on another machine): the same object, built
from the spec on that side. The server half runs in the round between the aggregator's
result and the server optimizer's step.

Per-learner state (``LearnerState``: named array lists, such as SCAFFOLD's c_i) is held by
the server, travels with each instruction and comes back with the reply, so it is
checkpointed with the run and survives a resume and a restarted learner machine alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fedpilot.types import (
    Config,
    LearnerId,
    LearnerState,
    Metrics,
    Reply,
    RoundContext,
    Update,
    Weights,
)


@dataclass(frozen=True)
class LearnerContext:
    """Read-only facts about the work a learner was asked to do."""

    learner: str
    """The learner's data source as this side knows it (partition index or data path)."""
    round: int
    kind: str
    """``"train"``, ``"evaluate"`` or a custom phase (``"query.<action>"``)."""
    config: Config
    task: Any = None
    """The learner's :class:`~fedpilot.tasks.Task` (the label-flip attack reads its
    number of classes from it)."""


class GradientTerm(ABC):
    """A term added to every local gradient at every step:
    ``grad_i += alpha · term(i, w_i, w0_i)``.

    ``param`` and ``start`` are the task's own tensors (a torch task's parameters and
    their values when training began); the term returns a tensor of the same kind, or
    None to leave that parameter alone. Written with tensor arithmetic only, a term
    needs no framework import (FedProx: ``param - start`` with ``alpha = mu``).
    """

    alpha: float = 1.0
    """What the returned term is scaled by as it is added (``grad.add_(term, alpha=)``):
    one fused step, so FedProx's ``mu·(w − w0)`` rounds as it always did."""

    @abstractmethod
    def __call__(self, index: int, param: Any, start: Any) -> Any | None:
        """``index`` is the parameter's position in the task's ``get_weights()``."""


@dataclass
class LocalWork:
    """What a learner's local work starts from; transforms may change any of it."""

    kind: str
    """``"train"`` or ``"evaluate"``."""
    weights: Weights
    data: Any
    """The learner's data for this work (an ``ArrayDataset`` for array tasks)."""
    config: Config
    extras: dict[str, Weights] = field(default_factory=dict)
    """Named array lists the server sent beside the model (SCAFFOLD's c)."""
    gradient_terms: list[GradientTerm] = field(default_factory=list)


@dataclass
class LearnerOutput:
    """What a learner's local work produced, before it goes on the wire."""

    weights: Weights
    """The trained weights (empty for an evaluation)."""
    metrics: Metrics
    num_examples: int
    extras: dict[str, Weights] = field(default_factory=dict)
    """Named array lists for the server half (SCAFFOLD's control delta)."""


Work = Callable[[LocalWork], LearnerOutput]
"""The rest of the chain: the inner transforms and, innermost, the task itself."""


@dataclass(frozen=True)
class Exchange:
    """The payload of a custom phase (``query.<action>``) both ways."""

    arrays: dict[str, Weights] = field(default_factory=dict)
    config: Config = field(default_factory=dict)
    metrics: Metrics = field(default_factory=dict)


class AggregationFailed(Exception):
    """A transform that aggregates sealed updates itself could not (secure aggregation
    with fewer shares than its threshold): the round fails and keeps its model."""


class UpdateTransform(ABC):  # noqa: B024 - every hook is optional; subclasses pick theirs
    """A paired stage: override the hooks you need; each is a no-op by default.

    Subclasses are built with their spec parameters as keyword arguments (the spec's
    ``transforms: [{name: ..., params: {...}}]``) and have a registry ``name``.
    """

    name: ClassVar[str] = ""
    actions: ClassVar[tuple[str, ...]] = ()
    """Custom phases this transform answers on the learner (``query.<action>``)."""

    seals_updates: ClassVar[bool] = False
    """The training reply carries no readable update, only what :meth:`take_sealed`
    reads (secure aggregation): the round neither validates nor folds it, and the
    aggregate comes from :meth:`sealed_aggregate`. At most one transform seals."""

    # -- learner half ---------------------------------------------------------------

    def on_learner(
        self, work: LocalWork, run: Work, *, state: LearnerState, ctx: LearnerContext
    ) -> LearnerOutput:
        """Wrap the learner's work: change ``work`` before, the output after, or both.
        ``state`` is this transform's own per-learner state; change it in place."""
        del state, ctx
        return run(work)

    def on_query(
        self, action: str, request: Exchange, *, state: LearnerState, ctx: LearnerContext
    ) -> Exchange:
        """Answer a custom phase this transform declared in :attr:`actions`."""
        raise NotImplementedError(f"{type(self).__name__} declares no action {action!r}")

    # -- server half ----------------------------------------------------------------

    def train_extras(
        self, *, learner: LearnerId, weights: Weights, ctx: RoundContext
    ) -> dict[str, Weights]:
        """Named array lists sent to ``learner`` beside the model this round."""
        del learner, weights, ctx
        return {}

    def on_download(self, weights: Weights, *, ctx: RoundContext) -> Weights:
        """The model as it goes to the learners this round (a codec encodes it)."""
        del ctx
        return weights

    def on_reply(self, reply: Reply, *, reference: Weights, ctx: RoundContext) -> Reply:
        """A train reply as it arrived, before validation (a codec decodes it).

        Raises:
            ValueError: the reply cannot be read; the round refuses it with the message.
        """
        del reference, ctx
        return reply

    def before_fold(self, update: Update, *, reference: Weights, ctx: RoundContext) -> Update:
        """A validated update, before the aggregator folds it in: what to fold instead
        (server-side DP clipping). Only the server half sees every update this way."""
        del reference, ctx
        return update

    def on_accepted(self, update: Update, *, ctx: RoundContext) -> None:
        """An update passed validation and was folded in (SCAFFOLD folds its delta)."""

    def on_server(self, aggregate: Weights, *, reference: Weights, ctx: RoundContext) -> Weights:
        """Between the aggregator's result and the server step (server-side DP noise)."""
        del reference, ctx
        return aggregate

    def take_sealed(
        self, learner: LearnerId, extras: dict[str, Weights], *, size: int
    ) -> str | None:
        """A sealing transform: one learner's sealed update (``size`` model parameters);
        a reason to refuse it, or None."""
        raise NotImplementedError(f"{type(self).__name__} seals no updates")

    def sealed_aggregate(self, *, reference: Weights, ctx: RoundContext) -> Weights:
        """A sealing transform: the round's aggregate from the sealed updates it took.

        Raises:
            AggregationFailed: the aggregate cannot be recovered; nothing is revealed.
        """
        raise NotImplementedError(f"{type(self).__name__} seals no updates")

    def phases(self, *, ctx: RoundContext) -> Sequence[Any]:
        """Extra exchanges this transform runs in the round (``orchestrator.Phase``s)."""
        del ctx
        return ()

    def state_dict(self) -> dict[str, Any]:
        """Server-side state the checkpoint keeps (numpy arrays allowed as leaves)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
