"""The sections of a FederationSpec. Every model forbids unknown keys."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fedpilot.types import Scalar


class Section(BaseModel):
    """Every spec model: unknown keys, NaN and infinities are refused everywhere, and a
    number field does not take a boolean (``rounds: true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        # A model validator: pydantic allows no field validator on a union's tag field.
        if isinstance(data, dict):
            for name in sorted(_number_fields(cls)):
                if isinstance(data.get(name), bool):
                    raise PydanticCustomError(
                        "bool_as_number", "must be a number, not true or false", {"field": name}
                    )
        return data


@cache
def _number_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that take a number and not a boolean."""
    return frozenset(
        name for name, info in model.model_fields.items() if _takes_number(info.annotation)
    )


def _takes_number(annotation: Any) -> bool:
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return bool not in kinds and any(kind in (int, float) for kind in kinds)


# ---------------------------------------------------------------- task


class TaskSpec(Section):
    """Which model and local training the learners run.

    Exactly one of ``name`` (a built-in task or ``package.module:Class``) and
    ``flower_clientapp`` (``package.module:app``, an existing Flower ClientApp) is set.
    """

    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    flower_clientapp: str | None = None
    initial_weights: str | None = Field(
        default=None,
        description="`package.module:function` returning the initial list of arrays, "
        "or a path to an .npz file; required with flower_clientapp.",
    )
    run_config: dict[str, Scalar] = Field(
        default_factory=dict, description="Passed to a Flower ClientApp as context.run_config."
    )

    @model_validator(mode="after")
    def _one_source(self) -> TaskSpec:
        if (self.name is None) == (self.flower_clientapp is None):
            raise ValueError(
                "set exactly one of `name` and `flower_clientapp`, "
                f"got name={self.name!r}, flower_clientapp={self.flower_clientapp!r}"
            )
        if self.flower_clientapp is not None and self.initial_weights is None:
            raise ValueError(
                "`initial_weights` is required with `flower_clientapp` "
                "(a `package.module:function` or an .npz path)"
            )
        for ref_name in ("flower_clientapp",):
            ref = getattr(self, ref_name)
            if ref is not None and not is_object_ref(ref):
                raise ValueError(f"`{ref_name}` must look like `package.module:attr`, got {ref!r}")
        return self


def is_object_ref(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text) is not None


# ---------------------------------------------------------------- data


class IidPartition(Section):
    kind: Literal["iid"] = "iid"


class DirichletPartition(Section):
    kind: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(gt=0, description="Concentration; small values mean skewed labels.")
    min_size: int = Field(
        default=2, ge=1, description="Resample until every learner has this many."
    )


class ShardsPartition(Section):
    kind: Literal["shards"] = "shards"
    per_learner: int = Field(default=2, ge=1, description="Label-sorted shards per learner.")


class PowerLawPartition(Section):
    kind: Literal["powerlaw"] = "powerlaw"
    exponent: float = Field(default=1.5, gt=0, description="Sizes follow a Pareto law.")
    min_size: int = Field(default=10, ge=1)


Partition = Annotated[
    IidPartition | DirichletPartition | ShardsPartition | PowerLawPartition,
    Field(discriminator="kind"),
]

_SHORTHAND = re.compile(r"^\s*(\w+)\s*(?:\(\s*([^)]*)\s*\))?\s*$")
_SHORTHAND_ARG = {"dirichlet": "alpha", "shards": "per_learner", "powerlaw": "exponent"}


class DataSpec(Section):
    dataset: str | None = Field(
        default=None, description="Built-in dataset; default: the task's own."
    )
    num_learners: int = Field(default=10, ge=1, le=100_000)
    partition: Partition = Field(default_factory=IidPartition)
    test_fraction: float = Field(
        default=0.2, ge=0, lt=1, description="Share of each learner's data held out locally."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Dataset generator options.")
    server_validation: int = Field(
        default=0,
        ge=0,
        description="Examples split off the server-held test set to validate updates "
        "(adaptive weighting's quality factor); 0: none.",
    )

    @field_validator("partition", mode="before")
    @classmethod
    def _partition_shorthand(cls, value: Any) -> Any:
        return expand_partition(value)


def expand_partition(value: Any) -> Any:
    """``partition: dirichlet(0.5)`` (reads better in YAML) as the mapping it stands for;
    anything but a string is returned as it is."""
    if not isinstance(value, str):
        return value
    match = _SHORTHAND.match(value)
    if match is None or match.group(1) not in ("iid", *_SHORTHAND_ARG):
        raise ValueError(
            "must be iid | dirichlet(alpha) | shards(per_learner) | powerlaw(exponent)"
        )
    kind, arg = match.group(1), match.group(2)
    parsed: dict[str, Any] = {"kind": kind}
    if arg:
        if kind not in _SHORTHAND_ARG:
            raise ValueError(f"partition {kind!r} takes no argument")
        try:
            parsed[_SHORTHAND_ARG[kind]] = yaml.safe_load(arg)
        except yaml.YAMLError:  # pydantic explains a ValueError, not a YAMLError
            raise ValueError(f"partition {kind!r} takes a number in its parentheses") from None
    return parsed


# ---------------------------------------------------------------- rounds and learners


class SamplingSpec(Section):
    """How many learners train each round: a ``fraction`` of those reachable or a ``count``."""

    fraction: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, ge=1)
    min_learners: int = Field(
        default=1, ge=1, description="Fewest accepted updates for a round to count."
    )

    @model_validator(mode="after")
    def _one_size(self) -> SamplingSpec:
        if self.fraction is not None and self.count is not None:
            raise ValueError(
                f"set `fraction` or `count`, not both; got fraction={self.fraction}, "
                f"count={self.count}"
            )
        return self

    def size(self, available: int) -> int:
        if self.count is not None:
            return min(self.count, available)
        fraction = 1.0 if self.fraction is None else self.fraction
        return max(1, min(available, round(fraction * available)))


class LocalSpec(Section):
    epochs: float = Field(
        default=1, gt=0, description="Local epochs per round (may be fractional)."
    )
    batch_size: int = Field(default=32, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)


class FedAvgStrategy(Section):
    """FedAvg (McMahan et al.): the weighted mean of the learners' models."""

    name: Literal["fedavg"] = "fedavg"
    server_lr: float = Field(default=1.0, gt=0, description="Step along the averaged update.")


class FedProxStrategy(Section):
    """FedProx (Li et al.): FedAvg plus a proximal term in the learners' objective."""

    name: Literal["fedprox"] = "fedprox"
    mu: float = Field(default=0.01, ge=0, description="Weight of the proximal term mu/2·|w-w_g|².")
    server_lr: float = Field(default=1.0, gt=0)


class FedAvgMStrategy(Section):
    """FedAvgM (Hsu et al.): server momentum on the averaged update."""

    name: Literal["fedavgm"] = "fedavgm"
    server_lr: float = Field(default=1.0, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)


class FedAdamStrategy(Section):
    """FedAdam (Reddi et al., adaptive federated optimization)."""

    name: Literal["fedadam"] = "fedadam"
    server_lr: float = Field(default=0.01, gt=0, description="eta, the server learning rate.")
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.99, ge=0, lt=1)
    tau: float = Field(default=1e-3, gt=0, description="Adaptivity: larger is less adaptive.")


class FedYogiStrategy(Section):
    """FedYogi (Reddi et al.): Adam with Yogi's additive second-moment update."""

    name: Literal["fedyogi"] = "fedyogi"
    server_lr: float = Field(default=0.01, gt=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.99, ge=0, lt=1)
    tau: float = Field(default=1e-3, gt=0)


class FedAdagradStrategy(Section):
    """FedAdagrad (Reddi et al.): accumulated squared pseudo-gradients."""

    name: Literal["fedadagrad"] = "fedadagrad"
    server_lr: float = Field(default=0.01, gt=0)
    beta1: float = Field(default=0.0, ge=0, lt=1)
    tau: float = Field(default=1e-3, gt=0)


class ScaffoldStrategy(Section):
    """SCAFFOLD (Karimireddy et al.): control variates correct the learners' drift; each
    learner keeps its own across rounds."""

    name: Literal["scaffold"] = "scaffold"
    server_lr: float = Field(default=1.0, gt=0, description="eta_g, the global step size.")


class FedNovaStrategy(Section):
    """FedNova (Wang et al.): updates normalised by each learner's local step count."""

    name: Literal["fednova"] = "fednova"
    server_lr: float = Field(default=1.0, gt=0)


AnyStrategy = (
    FedAvgStrategy
    | FedProxStrategy
    | FedAvgMStrategy
    | FedAdamStrategy
    | FedYogiStrategy
    | FedAdagradStrategy
    | ScaffoldStrategy
    | FedNovaStrategy
)
Strategy = Annotated[AnyStrategy, Field(discriminator="name")]


class WeightingSpec(Section):
    """How much each accepted update counts in the aggregate.

    ``data_size``: its ``num-examples`` (FedAvg). ``uniform``: equally. ``adaptive``:
    data size × reliability × quality, where reliability is the learner's share of
    accepted updates so far (with a Laplace prior) discounted by its lateness, and
    quality compares the updated model's loss on the server's validation split
    (``data.server_validation``) with the current global model's.
    """

    scheme: Literal["data_size", "uniform", "adaptive"] = "data_size"
    lateness_penalty: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Reliability × (1 − penalty × mean share of the deadline the learner used).",
    )
    quality: bool = Field(
        default=True, description="Use the quality factor when validation data exists."
    )
    quality_temperature: float = Field(
        default=0.1,
        gt=0,
        description="Quality = exp(−max(0, loss_update − loss_global) / temperature).",
    )


class ValidationSpec(Section):
    """Checks beyond shape, dtype, finiteness and a positive ``num-examples``.

    On by default: an update whose delta norm, or a ``num-examples`` claim the fleet
    cannot check against a declared size, is far above the rest of its cohort's is
    refused (no honest learner sends it; one that does would decide the aggregate alone).
    Evaluation replies are checked the same way. Cohort checks need an aggregator that can
    take an update out again (updates kept on disk); a strategy with its own streaming
    fold (FedNova) runs without the default ones.
    """

    max_norm_ratio: float | None = Field(
        default=10.0,
        gt=1,
        description="Reject an update whose delta norm is more than this many times the "
        "median of the other updates' in its round (2 or more updates); None: off.",
    )
    max_examples_ratio: float | None = Field(
        default=100.0,
        gt=1,
        description="Reject a `num-examples` claim (training or evaluation) more than this "
        "many times the median of the others' in its round, from a learner whose size the "
        "fleet does not know; None: off.",
    )
    norm_outlier_z: float | None = Field(
        default=None,
        gt=0,
        description="Reject updates whose delta norm has a robust z-score "
        "(median/MAD over the round's cohort) above this; None: off.",
    )
    max_examples: int | None = Field(
        default=None,
        ge=1,
        description="Largest plausible `num-examples` for any learner; a learner's own "
        "declared size (when the fleet knows it) caps it further.",
    )


class EvaluationSpec(Section):
    central_every: int = Field(
        default=1, ge=0, description="Central evaluation every k rounds (0: never)."
    )
    federated_every: int = Field(
        default=0, ge=0, description="Federated evaluation on learners' test splits every k rounds."
    )
    federated_fraction: float = Field(default=1.0, gt=0, le=1)


BUILTIN_GUARDS: tuple[str, ...] = ("relative_drop",)
"""Guard names ``guard.name`` accepts besides a ``package.module:Class`` reference."""


class GuardSpec(Section):
    """Roll back a global model that got worse than the last accepted one.

    ``relative_drop`` (the default) rolls back when ``metric`` worsens by more than
    ``max_relative_drop`` of the last accepted value; a user's Guard subclass, named as
    ``package.module:Class``, is built with ``params``.
    """

    enabled: bool = True
    name: str = Field(
        default="relative_drop",
        description="relative_drop, or `package.module:Class` naming a Guard subclass.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for a user's Guard class."
    )
    metric: str = "accuracy"
    mode: Literal["max", "min"] = "max"
    max_relative_drop: float = Field(default=0.10, ge=0)
    action: Literal["rollback"] = "rollback"

    @field_validator("name")
    @classmethod
    def _known_guard(cls, value: str) -> str:
        if value in BUILTIN_GUARDS or is_object_ref(value):
            return value
        raise ValueError(
            f"`guard.name` must be one of {' | '.join(BUILTIN_GUARDS)} or look like "
            f"`package.module:Class`, got name={value!r}"
        )


class TrackingSpec(Section):
    enabled: bool = True
    mlflow_uri: str | None = Field(
        default=None, description="Any MLflow tracking URI; default sqlite under the output dir."
    )
    experiment: str | None = Field(default=None, description="Default: the spec's name.")
    log_model: bool = True


def default_output_dir() -> Path:
    return Path("fedpilot-runs")
