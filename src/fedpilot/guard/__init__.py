"""Quality gates on the global model."""

from __future__ import annotations

from pathlib import Path

from fedpilot.errors import SpecError
from fedpilot.guard._base import Guard, Verdict
from fedpilot.guard.relative_drop import AcceptAll, RelativeDropGuard
from fedpilot.registry import Registry
from fedpilot.spec.sections import GuardSpec

GUARDS: Registry[Guard] = Registry("guard", Guard, field="guard.name")
"""Built-in guards by their ``guard.name``."""
GUARDS.add("relative_drop", RelativeDropGuard)


def build_guard(spec: GuardSpec, *, base_dir: Path | None = None) -> Guard:
    """The guard the ``guard`` section names (accept everything when it is disabled).

    Raises:
        SpecError: ``guard.name`` cannot be resolved to a concrete Guard subclass, or the
            class refuses ``guard.params``.
    """
    if not spec.enabled:
        return AcceptAll()
    cls = GUARDS.resolve(spec.name, base_dir=base_dir)
    try:
        return cls.from_spec(spec)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"`guard.params`: {spec.name} refused them: {exc}, got params={spec.params!r}",
            field="guard.params",
        ) from exc


__all__ = ["GUARDS", "AcceptAll", "Guard", "RelativeDropGuard", "Verdict", "build_guard"]
