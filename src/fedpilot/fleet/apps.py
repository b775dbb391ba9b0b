"""Which ClientApp a fleet runs: fedpilot's learner for a Task, or the user's own."""

from __future__ import annotations

from dataclasses import dataclass

from flwr.clientapp import ClientApp

from fedpilot._imports import import_object
from fedpilot.errors import SpecError
from fedpilot.learner.app import make_clientapp
from fedpilot.spec import FederationSpec


@dataclass(frozen=True)
class ClientAppSource:
    """A picklable recipe for the ClientApp, so worker processes can build their own."""

    spec_json: str

    @classmethod
    def from_spec(cls, spec: FederationSpec) -> ClientAppSource:
        return cls(spec.model_dump_json())

    def load(self) -> ClientApp:
        spec = FederationSpec.model_validate_json(self.spec_json)
        ref = spec.task.flower_clientapp
        if ref is None:
            return make_clientapp(spec)
        app = import_object(ref, field="task.flower_clientapp", base_dir=spec.base_dir)
        if not isinstance(app, ClientApp):
            raise SpecError(
                f"`task.flower_clientapp` must name a flwr ClientApp, got {ref!r} "
                f"which is a {type(app).__name__}",
                field="task.flower_clientapp",
            )
        return app
