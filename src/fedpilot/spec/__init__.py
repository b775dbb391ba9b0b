"""The federation spec: one validated pydantic model, loaded from YAML."""

from fedpilot.spec.load import apply_overrides, load_spec, schema, validate_spec
from fedpilot.spec.model import FederationSpec
from fedpilot.spec.runtime import FlowerRuntime, LocalRuntime, RayRuntime
from fedpilot.spec.sections import (
    DataSpec,
    DirichletPartition,
    EvaluationSpec,
    FedAvgStrategy,
    FedProxStrategy,
    GuardSpec,
    IidPartition,
    LocalSpec,
    PowerLawPartition,
    SamplingSpec,
    ShardsPartition,
    TaskSpec,
    TrackingSpec,
)

__all__ = [
    "DataSpec",
    "DirichletPartition",
    "EvaluationSpec",
    "FedAvgStrategy",
    "FedProxStrategy",
    "FederationSpec",
    "FlowerRuntime",
    "GuardSpec",
    "IidPartition",
    "LocalRuntime",
    "LocalSpec",
    "PowerLawPartition",
    "RayRuntime",
    "SamplingSpec",
    "ShardsPartition",
    "TaskSpec",
    "TrackingSpec",
    "apply_overrides",
    "load_spec",
    "schema",
    "validate_spec",
]
