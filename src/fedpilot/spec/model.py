"""FederationSpec: the single source of truth of a run."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from fedpilot.rundir import mlflow_db
from fedpilot.spec.aggregation import AggregationSpec
from fedpilot.spec.compression import CompressionSpec
from fedpilot.spec.drift import DriftSpec
from fedpilot.spec.monitoring import MonitoringSpec
from fedpilot.spec.privacy import PrivacySpec
from fedpilot.spec.registry import RegistrySpec
from fedpilot.spec.runtime import LocalRuntime, Runtime
from fedpilot.spec.sections import (
    DataSpec,
    EvaluationSpec,
    FedAvgStrategy,
    GuardSpec,
    LocalSpec,
    SamplingSpec,
    Section,
    Strategy,
    TaskSpec,
    TrackingSpec,
    ValidationSpec,
    WeightingSpec,
    default_output_dir,
)
from fedpilot.spec.secure_aggregation import SecureAggregationSpec, secure_aggregation_refusal
from fedpilot.spec.selection import RandomSelection, SelectionSpec
from fedpilot.spec.simulation import SimulationSpec
from fedpilot.spec.transforms import TransformEntry
from fedpilot.spec.tune import TuneSpec, tune_refusal


class FederationSpec(Section):
    """A whole federation: what to train, on which data, how, and how it is watched."""

    name: str = Field(description="Run and MLflow experiment name.")
    seed: int = Field(default=0, ge=0, lt=2**32)
    task: TaskSpec
    data: DataSpec = Field(default_factory=DataSpec)
    rounds: int = Field(default=10, ge=1, le=1_000_000)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    local: LocalSpec = Field(default_factory=LocalSpec)
    selection: SelectionSpec = Field(default_factory=RandomSelection)
    strategy: Strategy = Field(default_factory=FedAvgStrategy)
    aggregation: AggregationSpec = Field(default_factory=AggregationSpec)
    weighting: WeightingSpec = Field(default_factory=WeightingSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    simulation: SimulationSpec | None = Field(
        default=None, description="Simulated heterogeneity and attackers (local runs)."
    )
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    transforms: list[TransformEntry] = Field(
        default_factory=list,
        description="The user's update transforms, innermost last, after the strategy's own.",
    )
    guard: GuardSpec = Field(default_factory=GuardSpec)
    compression: CompressionSpec = Field(default_factory=CompressionSpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    secure_aggregation: SecureAggregationSpec | None = Field(
        default=None, description="SecAgg+: the server learns only the sum of the updates."
    )
    tune: TuneSpec | None = Field(default=None, description="What `fedpilot tune` searches.")
    drift: DriftSpec = Field(default_factory=DriftSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    monitoring: MonitoringSpec | None = Field(
        default=None, description="Alert rules evaluated in the run's process, and a webhook."
    )
    runtime: Runtime = Field(default_factory=LocalRuntime)
    output_dir: Path = Field(default_factory=default_output_dir)
    base_dir: Path | None = Field(
        default=None,
        description="Folder of the spec file; user code named in the spec is imported from here.",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,99}", value):
            raise ValueError(
                "`name` must be 1-100 letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit, got name={value!r}"
            )
        return value

    @model_validator(mode="after")
    def _enough_learners(self) -> FederationSpec:
        sampled = self.sampling.size(self.data.num_learners)
        if self.sampling.min_learners > sampled:
            raise ValueError(
                f"`sampling.min_learners` must be <= the learners sampled per round "
                f"({sampled} of data.num_learners={self.data.num_learners}), "
                f"got min_learners={self.sampling.min_learners}"
            )
        # The strategy says what it cannot be combined with. Imported here, not at the
        # top: the strategies' code imports the spec, never the other way round.
        from fedpilot.strategy import build_strategy

        refusal = build_strategy(self.strategy, base_dir=self.base_dir).incompatibility(
            aggregation=self.aggregation,
            cohort_checks=self.validation.norm_outlier_z is not None,
        )
        if refusal is not None:
            raise ValueError(refusal)
        refusal = self.privacy.refusal(
            rule=self.aggregation.rule,
            clip=self.aggregation.clip is not None,
            weighting=self.weighting.scheme,
            strategy=self.strategy.name,
            selection=self.selection.name,
            cohort=sampled,
        )
        if refusal is not None:
            raise ValueError(refusal)
        if self.privacy.dpsgd.enabled:
            from fedpilot.privacy.dpsgd import dpsgd_refusal

            refusal = dpsgd_refusal(self.task, self.base_dir)
            if refusal is not None:
                raise ValueError(refusal)
        refusal = secure_aggregation_refusal(self) or tune_refusal(self)
        if refusal is not None:
            raise ValueError(refusal)
        return self

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in, as plain JSON-able data."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """A short hash of the resolved spec: equal specs, equal digests."""
        # Where the spec file lives does not change what the run does.
        text = json.dumps(self.model_dump(mode="json", exclude={"base_dir"}), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def resolve_path(self, path: str | Path) -> Path:
        """``path`` as named in the spec: relative paths are to the spec file's folder."""
        path = Path(path)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def mlflow_uri(self) -> str:
        if self.tracking.mlflow_uri:
            return self.tracking.mlflow_uri
        return f"sqlite:///{mlflow_db(self.output_dir).resolve()}"
