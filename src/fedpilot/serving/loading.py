"""Registered model versions out of an MLflow store, loaded with ``mlflow.pyfunc``.

A version is served only if it loads, has a signature whose input is one numeric tensor
(what fedpilot's Tasks log), and answers a batch of zeros: everything that can go wrong
with a model goes wrong here, before it takes a request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedpilot.errors import UserError
from fedpilot.serving.inputs import InputSpec
from fedpilot.tracking import _mlflow_utils as mu


class ModelUnavailable(UserError):
    """A registered model, alias or version that cannot be served; the message says why."""


class ModelNotFound(ModelUnavailable):
    """The store has no such registered model, alias or version."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version, ready to predict."""

    name: str
    version: str
    pyfunc: Any
    """What ``mlflow.pyfunc.load_model`` returned."""
    run: Callable[[np.ndarray], Any]
    """The model's predict: ``pyfunc.predict``, or the same computation without its
    per-call checks (see :func:`_predictor`)."""
    input: InputSpec
    scores: bool
    """Its output is a row of class scores a row (argmax is the label), not labels."""
    run_id: str | None = None
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)

    def predict(self, batch: np.ndarray) -> dict[str, Any]:
        """Labels (and class scores, for a model that outputs them) of ``batch``."""
        output = np.asarray(self.run(batch))
        if self.scores and output.ndim == 2:
            return {"predictions": output.argmax(axis=1), "scores": _jsonable(output)}
        return {"predictions": _jsonable(output)}


def _jsonable(output: np.ndarray) -> Any:
    # orjson writes contiguous numeric arrays itself; string labels (an sklearn
    # classifier's) and object arrays go as lists.
    if output.dtype.kind in "biuf":
        return np.ascontiguousarray(output)
    return output.tolist()


class ModelStore:
    """The registry of one MLflow tracking store."""

    def __init__(self, uri: str) -> None:
        path = mu.sqlite_path(uri)
        if path is not None and not path.is_file():
            # MlflowClient would create an empty store there and report "no such model".
            raise ModelUnavailable(f"no MLflow store at {path} (tracking URI {uri})")
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def version_of(self, name: str, alias: str) -> str:
        """The version ``alias`` names now.

        Raises:
            ModelNotFound: no such model or alias.
            ModelUnavailable: the store cannot be read.
        """
        with self._errors(f"{name}@{alias}"):
            return str(self.client.get_model_version_by_alias(name, alias).version)

    def load(self, name: str, version: str) -> ServedModel:
        """Load version ``version`` of ``name`` and try it on a batch of zeros.

        Raises:
            ModelUnavailable: it does not exist, does not load, has no usable signature,
                or fails on the zeros.
        """
        import mlflow

        where = f"{name}/{version}"
        with self._errors(where):
            info = self.client.get_model_version(name, version)
        try:
            # load_model reads the process-wide tracking URI; use_tracking_uri holds a lock.
            with mu.use_tracking_uri(self.uri):
                model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        except Exception as exc:
            raise ModelUnavailable(f"model {where} cannot be loaded: {exc}") from exc
        signature = model.metadata.signature
        spec = _input_spec(signature, where)
        served = ServedModel(
            name=name,
            version=str(version),
            pyfunc=model,
            run=_predictor(model, spec),
            input=spec,
            scores=_outputs_scores(signature),
            run_id=info.run_id,
            source=info.source,
            tags=dict(info.tags),
            signature=signature.to_dict(),
        )
        try:
            served.predict(spec.zeros())
        except Exception as exc:
            raise ModelUnavailable(f"model {where} fails on a batch of zeros: {exc}") from exc
        return served

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            # A missing alias is INVALID_PARAMETER_VALUE "... alias x not found".
            missing = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message
            if missing:
                raise ModelNotFound(f"no registered model version {what}: {exc.message}") from exc
            raise ModelUnavailable(f"cannot read {what} from {self.uri}: {exc.message}") from exc
        except Exception as exc:
            raise ModelUnavailable(f"cannot read {what} from {self.uri}: {exc}") from exc


def _input_spec(signature: Any, where: str) -> InputSpec:
    from mlflow.types.schema import TensorSpec

    if signature is None:
        raise ModelUnavailable(
            f"model {where} has no signature: serving checks requests against it "
            "(log the model with signature=infer_signature(x, y))"
        )
    inputs = signature.inputs.inputs if signature.inputs is not None else []
    if len(inputs) != 1 or not isinstance(inputs[0], TensorSpec):
        raise ModelUnavailable(
            f"model {where}'s signature must take one tensor (infer_signature on a numpy "
            f"array), got inputs {signature.inputs}"
        )
    tensor = inputs[0]
    dtype = np.dtype(tensor.type)
    if dtype.kind not in "fiu" or not tensor.shape or tensor.shape[0] != -1:
        raise ModelUnavailable(
            f"model {where}'s input must be a numeric tensor batched on its first axis, "
            f"got {dtype.name} of shape {tensor.shape}"
        )
    return InputSpec(dtype=dtype, shape=tuple(int(d) for d in tensor.shape))


def _outputs_scores(signature: Any) -> bool:
    """A float output of shape (-1, k>1) is class scores; anything else is passed through."""
    from mlflow.types.schema import TensorSpec

    outputs = signature.outputs.inputs if signature.outputs is not None else []
    if len(outputs) != 1 or not isinstance(outputs[0], TensorSpec):
        return False
    tensor = outputs[0]
    shape = tuple(tensor.shape)
    return np.dtype(tensor.type).kind == "f" and len(shape) == 2 and shape[1] > 1


def _predictor(model: Any, spec: InputSpec) -> Callable[[np.ndarray], Any]:
    """``model.predict``, or for a torch module on the CPU the module itself under
    ``torch.inference_mode``.

    pyfunc's predict checks every batch against the signature (again: the server already
    did) and inspects its own signature on every call, which costs more than running a
    small model. The module is used only if it gives pyfunc's answer on a batch of zeros.
    """
    import torch

    try:
        module = model.get_raw_model()
    except Exception:
        return model.predict  # type: ignore[no-any-return]
    if not isinstance(module, torch.nn.Module) or hasattr(module, "predict"):
        # Not a plain module (a forecasting model predicts through its own method).
        return model.predict  # type: ignore[no-any-return]
    if any(p.device.type != "cpu" for p in module.parameters()):
        return model.predict  # type: ignore[no-any-return]

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(batch))
        return out.numpy()  # type: ignore[no-any-return]

    zeros = spec.zeros()
    try:
        same = np.allclose(run(zeros), np.asarray(model.predict(zeros)), equal_nan=True)
    except Exception:
        same = False
    return run if same else model.predict
