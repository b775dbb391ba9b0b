"""Serving a registered model over HTTP: ``fedpilot serve NAME[@alias|/version]``.

:class:`ModelStore` loads versions out of the MLflow Model Registry, :class:`ModelService`
holds the versions served (primary and canary) and follows their aliases live,
:func:`create_app` is the FastAPI app in front of it.
"""

from fedpilot.serving.app import Limits, create_app
from fedpilot.serving.inputs import BadInput, InputSpec
from fedpilot.serving.loading import ModelNotFound, ModelStore, ModelUnavailable, ServedModel
from fedpilot.serving.reference import Canary, ModelRef
from fedpilot.serving.routing import Route, Router, Routes
from fedpilot.serving.service import ModelService

__all__ = [
    "BadInput",
    "Canary",
    "InputSpec",
    "Limits",
    "ModelNotFound",
    "ModelRef",
    "ModelService",
    "ModelStore",
    "ModelUnavailable",
    "Route",
    "Router",
    "Routes",
    "ServedModel",
    "create_app",
]
