"""A federation's transforms, in order, and how a learner runs its work through them.

The chain for a spec is: ``sysmetrics`` (outermost, so it measures what really goes on
the wire), ``secure_aggregation`` (masking is the last thing before the wire),
``compression`` (when the spec turns it on), ``learner_dp`` (when
``privacy.mode`` is set), the strategy's own transforms, ``label_flip`` (the
simulated attack, idle unless an instruction asks for it), ``drift_injection`` and
``drift`` (when ``simulation.drift`` and ``drift`` turn them on), ``local_tuning``
(when ``tune.learner`` is set), then the spec's
``transforms`` (innermost last), then ``dpsgd`` when ``privacy.dpsgd.enabled`` (it
replaces the task's training step); innermost of all is the task. The learner side
(:class:`~fedpilot.learner.core.TaskLearner`) and the round's server stage build the
same chain from the same spec.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedpilot.errors import SpecError
from fedpilot.spec import FederationSpec
from fedpilot.spec.transforms import TransformSpec
from fedpilot.transforms._base import (
    Exchange,
    LearnerContext,
    LearnerOutput,
    LocalWork,
    UpdateTransform,
    Work,
)
from fedpilot.transforms._registry import TRANSFORMS
from fedpilot.types import LearnerState

QUERY = "query"
"""The category of a custom phase's instruction kind: ``query.<action>``."""


def transforms_for(spec: FederationSpec) -> list[TransformSpec]:
    """The full ordered chain for ``spec``, outermost first."""
    # Imported here: the strategies build server optimizers and aggregators, which a
    # learner machine's light imports of this module do not need.
    from fedpilot.compression import compression_transforms
    from fedpilot.drift import drift_transforms
    from fedpilot.hpo.learner import learner_tuning_transforms
    from fedpilot.privacy import privacy_transforms
    from fedpilot.privacy.dpsgd import dpsgd_transforms
    from fedpilot.secagg import secagg_transforms
    from fedpilot.strategy import build_strategy

    strategy = build_strategy(spec.strategy, base_dir=spec.base_dir)
    return [
        TransformSpec(name="sysmetrics"),
        # Masking is the last thing before the wire; distributed DP noise goes on before it.
        *secagg_transforms(spec),
        *compression_transforms(spec),
        *privacy_transforms(spec),
        *(TransformSpec(name=name, params=params) for name, params in strategy.transforms()),
        # Always there, idle unless an instruction says so: the attack simulation wraps
        # whatever fleet it is given and marks its attackers' instructions.
        TransformSpec(name="label_flip"),
        # Simulated drift, then the data summaries (they describe the data trained on).
        *drift_transforms(spec),
        # Local tuning's trials run through what is inside it: the user's transforms.
        *learner_tuning_transforms(spec),
        *spec.transforms,
        # DP-SGD replaces the task's own training step, so nothing may sit inside it.
        *dpsgd_transforms(spec),
    ]


def build_transforms(spec: FederationSpec) -> list[UpdateTransform]:
    """:func:`transforms_for`'s chain, built (one fresh object per entry).

    Raises:
        SpecError: an entry names no transform, its params do not fit, two entries
            would share a state prefix (the same transform twice) or an action.
    """
    from fedpilot.privacy.dpsgd import dpsgd_transforms

    chain = transforms_for(spec)
    user_stop = len(chain) - len(dpsgd_transforms(spec))
    user_start = user_stop - len(spec.transforms)
    built: list[UpdateTransform] = []
    for i, entry in enumerate(chain):
        in_user = user_start <= i < user_stop
        where = f"transforms[{i - user_start}].params" if in_user else None
        built.append(
            TRANSFORMS.build(entry.name, entry.params, base_dir=spec.base_dir, params_field=where)
        )
    seen: dict[str, str] = {}
    for transform, entry in zip(built, chain, strict=True):
        key = state_key(transform)
        if key in seen:
            raise SpecError(
                f"`transforms` may hold each transform once: {entry.name!r} and "
                f"{seen[key]!r} are both {key!r}, "
                f"got transforms={[e.name for e in spec.transforms]}",
                field="transforms",
            )
        seen[key] = entry.name
    answering(built)  # two answers to one custom phase: refused now, not mid-run
    return built


def state_key(transform: UpdateTransform) -> str:
    """The prefix of ``transform``'s keys in a learner's state: its registry name."""
    return transform.name or type(transform).__name__


def own_state(state: LearnerState, transform: UpdateTransform) -> LearnerState:
    """``transform``'s slice of a learner's ``state``, without its ``<name>/`` prefix."""
    prefix = state_key(transform) + "/"
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def put_own_state(state: LearnerState, transform: UpdateTransform, own: LearnerState) -> None:
    """Write ``transform``'s (changed) slice back into ``state``."""
    prefix = state_key(transform) + "/"
    for key in [k for k in state if k.startswith(prefix)]:
        del state[key]
    state.update({prefix + k: v for k, v in own.items()})


def run_chain(
    transforms: Sequence[UpdateTransform],
    work: LocalWork,
    task: Work,
    *,
    state: LearnerState,
    ctx: LearnerContext,
) -> LearnerOutput:
    """``work`` through every transform's ``on_learner``, outermost first, the task
    innermost. Each transform sees only its own slice of ``state`` (changed in place)."""

    def stage(i: int) -> Work:
        if i == len(transforms):
            return task
        transform, inner = transforms[i], stage(i + 1)

        def run(current: LocalWork) -> LearnerOutput:
            own = own_state(state, transform)
            out = transform.on_learner(current, inner, state=own, ctx=ctx)
            put_own_state(state, transform, own)
            return out

        return run

    return stage(0)(work)


def answering(transforms: Sequence[UpdateTransform]) -> dict[str, UpdateTransform]:
    """Which transform answers each custom phase's action.

    Raises:
        SpecError: two transforms declare the same action.
    """
    by_action: dict[str, UpdateTransform] = {}
    for transform in transforms:
        for action in transform.actions:
            if action in by_action:
                raise SpecError(
                    f"`transforms`: action {action!r} is declared by both "
                    f"{state_key(by_action[action])} and {state_key(transform)}",
                    field="transforms",
                )
            by_action[action] = transform
    return by_action


def query_action(kind: str) -> str | None:
    """``"x"`` for an instruction kind ``"query.x"``, else None."""
    category, dot, action = kind.partition(".")
    return action if category == QUERY and dot and action else None


def answer_query(
    transforms: Sequence[UpdateTransform],
    action: str,
    request: Exchange,
    *,
    state: LearnerState,
    ctx: LearnerContext,
) -> Exchange:
    """The answer of the transform that declared ``action``, with its slice of ``state``.

    Raises:
        ValueError: no transform declares ``action``.
    """
    transform = answering(transforms).get(action)
    if transform is None:
        raise ValueError(
            f"no transform answers {QUERY}.{action}; declared actions: "
            f"{sorted(answering(transforms))}"
        )
    own = own_state(state, transform)
    reply = transform.on_query(action, request, state=own, ctx=ctx)
    put_own_state(state, transform, own)
    return reply
