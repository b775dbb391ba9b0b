"""What a fleet runs for each learner: fedpilot's TaskLearner, or the user's ClientApp."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.clientapp import ClientApp

from fedpilot._imports import import_object
from fedpilot.errors import SpecError
from fedpilot.learner.core import TaskLearner
from fedpilot.spec import FederationSpec

LearnerRuntime = ClientApp | TaskLearner
"""A Flower ClientApp (called with Messages) or fedpilot's TaskLearner (called directly)."""


@dataclass(frozen=True)
class LearnerSource:
    """A picklable recipe for the learner runtime, so worker processes build their own."""

    spec_json: str

    @classmethod
    def from_spec(cls, spec: FederationSpec) -> LearnerSource:
        return cls(spec.model_dump_json())

    def load(self) -> LearnerRuntime:
        spec = FederationSpec.model_validate_json(self.spec_json)
        ref = spec.task.flower_clientapp
        if ref is None:
            # In a local process there is no wire to cross: the Task is called directly,
            # the same core that fedpilot's ClientApp wraps for real deployments.
            return TaskLearner(spec)
        app = import_object(ref, field="task.flower_clientapp", base_dir=spec.base_dir)
        if not isinstance(app, ClientApp):
            raise SpecError(
                f"`task.flower_clientapp` must name a flwr ClientApp, got {ref!r} "
                f"which is a {type(app).__name__}",
                field="task.flower_clientapp",
            )
        return app
