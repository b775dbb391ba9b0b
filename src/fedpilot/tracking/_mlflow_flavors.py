"""How a Task's model reaches MLflow through a flavor (``mlflow.<flavor>.log_model``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fedpilot.tracking import _mlflow_utils as mu

if TYPE_CHECKING:
    from fedpilot.tasks._base import ModelArtifact


def _flavor_defaults(flavor: str) -> dict[str, Any]:
    """fedpilot's ``log_model`` options for a flavor (a ModelArtifact's options win)."""
    if flavor == "pytorch":
        # MLflow 3's default format (pt2) needs an input example; pickle does not.
        return {
            "serialization_format": "pickle",
            "pip_requirements": mu.pinned_requirements("torch", "cloudpickle"),
        }
    if flavor == "sklearn":
        return {
            "serialization_format": "skops",
            "pip_requirements": mu.pinned_requirements("scikit-learn", "skops"),
        }
    return {}


def _signature(artifact: ModelArtifact) -> dict[str, Any]:
    """``signature`` and ``input_example`` from the artifact's examples, when it has both."""
    if artifact.input_example is None or artifact.output_example is None:
        return {}
    from mlflow.models import infer_signature

    signature = infer_signature(artifact.input_example, artifact.output_example)
    return {"signature": signature, "input_example": artifact.input_example}


def flavor_logger(artifact: ModelArtifact) -> Callable[..., None]:
    """A function logging ``artifact`` as ``mlflow.<flavor>.log_model(model, **where,
    **options)``; it takes the LoggedModel's ``name``, ``model_id``, ``run_id``, ``step``.

    Raises:
        ValueError: ``artifact.flavor`` names no MLflow module with a ``log_model``.
    """
    import mlflow

    flavor = artifact.flavor
    log: Any = None
    if flavor.isidentifier():
        try:
            # Flavors are lazily loaded attributes of mlflow; one that needs a missing
            # library (onnx without onnx installed) raises ImportError here.
            log = getattr(getattr(mlflow, flavor, None), "log_model", None)
        except ImportError as exc:
            raise ValueError(
                f"MLflow flavor {flavor!r} (ModelArtifact.flavor) cannot be loaded: {exc}"
            ) from exc
    if not callable(log):
        raise ValueError(
            f"unknown MLflow flavor {flavor!r} (ModelArtifact.flavor): mlflow.{flavor} "
            "must be a module with a log_model function, e.g. pytorch, sklearn, onnx, pyfunc"
        )
    options = {**_flavor_defaults(flavor), **_signature(artifact), **artifact.options}
    params = inspect.signature(log).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def log_artifact(**where: Any) -> None:
        if not takes_any:
            # pyfunc's log_model takes no run_id: the LoggedModel already names its run.
            where = {k: v for k, v in where.items() if k in params}
        if flavor == "pyfunc":
            log(python_model=artifact.model, **where, **options)
        else:
            log(artifact.model, **where, **options)

    return log_artifact
