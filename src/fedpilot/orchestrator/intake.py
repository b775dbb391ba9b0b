"""A round's intake of training replies: each one decoded, validated, weighed and folded
into the aggregate as it arrives (or refused with its reason), a sealed one handed to the
transform that seals it, and the cohort checks once every reply is in.

Split from :mod:`.round`, which runs the round's exchanges around it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from fedpilot.aggregation.weighting import WeightFactors
from fedpilot.orchestrator._tally import RoundTally
from fedpilot.orchestrator.events import Callback, UpdateVerdict
from fedpilot.transforms import UpdateTransform
from fedpilot.types import Reply, RoundContext, Update, Weights

if TYPE_CHECKING:
    from fedpilot.orchestrator.round import RoundParts


class UpdateIntake:
    """Takes a round's training replies for ``parts``' aggregator, telling ``events``."""

    def __init__(self, parts: RoundParts, events: Callback) -> None:
        self.parts = parts
        self.events = events
        # Hooks a transform does not override cost nothing per update.
        self._decoding = overriding(parts.transforms, "on_reply")
        self._folding = overriding(parts.transforms, "before_fold")
        self._accepting = overriding(parts.transforms, "on_accepted")
        self.sealer = next((t for t in parts.transforms if t.seals_updates), None)
        """The transform that seals updates (secure aggregation), if any."""

    def take(self, ctx: RoundContext, reply: Reply, reference: Weights, tally: RoundTally) -> None:
        """Validate one reply, weigh it and fold it in (or record why not)."""
        parts = self.parts
        tally.count_bytes(reply)
        if reply.ok and tally.deadline_s is not None and reply.duration > tally.deadline_s:
            # Whatever the fleet: a reply that took longer than the round allows is late.
            late = f"timeout: learner {reply.learner} replied after {reply.duration:.3g} s, "
            reply = replace(reply, error=f"{late}past the round deadline; a late reply is refused")
        if not reply.ok:
            tally.fail(reply)
            verdict = UpdateVerdict(False, reply.error, failed=True, duration=reply.duration)
            self.events.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)
            return
        digest = update_digest(reply)
        try:
            for transform in self._decoding:
                reply = transform.on_reply(reply, reference=reference, ctx=ctx)
        except ValueError as exc:
            reason = f"undecodable update: {exc}"
            tally.reject(reply, reason)
            verdict = UpdateVerdict(
                False, reason, metrics=reply.metrics, duration=reply.duration, digest=digest
            )
            self.events.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)
            return
        if self.sealer is not None:
            self._take_sealed(ctx, reply, reference, tally, digest)
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
            digest=digest,
        )
        if not check.ok:
            tally.reject(reply, check.reason or "rejected")
            self.events.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)
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
        for transform in self._folding:
            update = transform.before_fold(update, reference=reference, ctx=ctx)
        parts.aggregator.add(update)
        tally.accept(reply, check.num_examples, factors, check.delta_norm)
        if parts.validator.has_cohort_checks:
            tally.held.append((reply.learner, verdict))  # judged again with its cohort
            if self._accepting:
                tally.pending[reply.learner] = update  # told once the cohort agrees
            return
        for transform in self._accepting:
            transform.on_accepted(update, ctx=ctx)
        self.events.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)

    def _take_sealed(
        self, ctx: RoundContext, reply: Reply, reference: Weights, tally: RoundTally, digest: str
    ) -> None:
        """A sealed (masked) update: no per-update check can read it; the sealing
        transform keeps it for the sum. Counted equally (an unweighted mean)."""
        assert self.sealer is not None
        size = sum(int(w.size) for w in reference)
        reason = self.sealer.take_sealed(reply.learner, dict(reply.extras), size=size)
        num_examples = reply.num_examples if isinstance(reply.num_examples, int) else 0
        verdict = UpdateVerdict(
            reason is None,
            reason,
            num_examples=num_examples,
            metrics=reply.metrics,
            duration=reply.duration,
            bytes_sent=reply.bytes_sent,
            bytes_received=reply.bytes_received,
            digest=digest,
        )
        if reason is not None:
            tally.reject(reply, reason)
        else:
            tally.accept(reply, num_examples, WeightFactors(weight=1.0, data=1.0), None)
            # Counted without its arrays: distributed DP counts the folded updates and
            # their clip bits, DP-SGD reads the learner's reported ε.
            sealed = Update(reply.learner, [], num_examples, reply.metrics, weight=1.0)
            for transform in self._accepting:
                transform.on_accepted(sealed, ctx=ctx)
        self.events.on_update(ctx=ctx, learner=reply.learner, verdict=verdict)

    def cohort_checks(self, ctx: RoundContext, tally: RoundTally) -> None:
        """Reject updates that only look wrong next to the rest of the round's."""
        claims = {k: int(tally.learner_metrics[k]["num_examples"]) for k in tally.accepted}
        outliers = self.parts.validator.cohort_outliers(tally.norms, claims)
        for learner, reason in sorted(outliers.items()):
            self.parts.aggregator.exclude(learner, reason)
            tally.withdraw(learner, reason)
        for learner, verdict in tally.held:
            if learner in outliers:
                verdict = replace(verdict, accepted=False, reason=outliers[learner])
            self.events.on_update(ctx=ctx, learner=learner, verdict=verdict)
        tally.held.clear()
        for learner in sorted(tally.pending):  # withdrawn ones are gone; learner order
            for transform in self._accepting:
                transform.on_accepted(tally.pending[learner], ctx=ctx)
        tally.pending.clear()


def update_digest(reply: Reply) -> str:
    """SHA-256 (hex) of a reply's arrays as they arrived: the weights, then the extras by
    name, each array's dtype and shape hashed with its bytes (two updates with the same
    bytes in another shape differ)."""
    digest = hashlib.sha256()
    for name, arrays in (("weights", reply.weights), *sorted(reply.extras.items())):
        digest.update(f"{name}:{len(arrays)};".encode())
        for array in arrays:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape};".encode())
            digest.update(array.data)
    return digest.hexdigest()


def overriding(transforms: Sequence[UpdateTransform], hook: str) -> list[UpdateTransform]:
    """The transforms that override ``hook`` (the others' default does nothing)."""
    return [t for t in transforms if getattr(type(t), hook) is not getattr(UpdateTransform, hook)]
