from __future__ import annotations

from pathlib import Path

import pytest

from fedpilot.errors import SpecError
from fedpilot.spec import DirichletPartition, FedProxStrategy, load_spec, schema, validate_spec

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
MINIMAL = {"name": "m", "task": {"name": "digits-mlp"}}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.base_dir == EXAMPLES.resolve()


def test_defaults_and_shorthand() -> None:
    spec = validate_spec({**MINIMAL, "data": {"partition": "dirichlet(0.3)"}})
    assert spec.data.partition == DirichletPartition(alpha=0.3)
    assert spec.guard.max_relative_drop == 0.10 and spec.guard.action == "rollback"
    assert spec.runtime.mode == "local" and spec.runtime.workers == 0
    assert spec.mlflow_uri().startswith("sqlite:///") and spec.mlflow_uri().endswith("mlflow.db")


def test_strategy_is_chosen_by_name() -> None:
    spec = validate_spec({**MINIMAL, "strategy": {"name": "fedprox", "mu": 0.5}})
    assert spec.strategy == FedProxStrategy(mu=0.5)


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({**MINIMAL, "roundz": 3}, "roundz", "unknown key"),
        ({**MINIMAL, "sampling": {"fraction": 1.5}}, "sampling.fraction", "fraction=1.5"),
        ({**MINIMAL, "rounds": 0}, "rounds", "rounds=0"),
        ({**MINIMAL, "local": {"lr": -1}}, "local.lr", "lr=-1"),
        ({**MINIMAL, "local": {"optimizer": "lbfgs"}}, "local.optimizer", "'sgd' or 'adam'"),
        ({**MINIMAL, "data": {"partition": "zipf(2)"}}, "data.partition", "zipf"),
        ({**MINIMAL, "data": {"partition": "dirichlet(0)"}}, "data.partition.alpha", "alpha=0"),
        ({**MINIMAL, "strategy": {"name": "fedsgd"}}, "strategy", "fedsgd"),
        ({**MINIMAL, "guard": {"mode": "up"}}, "guard.mode", 'mode="up"'),
        ({"name": "m"}, "task", "missing"),
        ({**MINIMAL, "name": "bad name!"}, "name", "bad name!"),
        ({"name": "m", "task": {"name": "x", "flower_clientapp": "a:b"}}, "task", "exactly one"),
        ({"name": "m", "task": {"flower_clientapp": "a:b"}}, "task", "initial_weights"),
        ({**MINIMAL, "sampling": {"fraction": 0.5, "count": 3}}, "sampling", "not both"),
        ({**MINIMAL, "strategy": {"name": "fedadam", "beta1": 1.0}}, "strategy.beta1", "beta1"),
        ({**MINIMAL, "aggregation": {"rule": "avg"}}, "aggregation.rule", "avg"),
        ({**MINIMAL, "aggregation": {"trim_fraction": 0.5}}, "aggregation.trim_fraction", "0.5"),
        ({**MINIMAL, "aggregation": {"clip": {}}}, "aggregation.clip", "bound"),
        ({**MINIMAL, "selection": {"name": "fedcs"}}, "selection.name", "fedcs"),
        ({**MINIMAL, "selection": {"name": "ucb", "c": -1}}, "selection.c", "c=-1"),
        ({**MINIMAL, "weighting": {"scheme": "trust"}}, "weighting.scheme", "trust"),
        ({**MINIMAL, "validation": {"norm_outlier_z": 0}}, "validation.norm_outlier_z", "0"),
        (
            {**MINIMAL, "simulation": {"attack": {"fraction": 1.0, "behaviour": "lie"}}},
            "simulation.attack.fraction",
            "fraction=1",
        ),
        (
            {**MINIMAL, "simulation": {"stragglers": {"fraction": 0.5, "policy": "wait"}}},
            "simulation.stragglers.policy",
            "wait",
        ),
        (
            {**MINIMAL, "strategy": {"name": "fednova"}, "aggregation": {"rule": "median"}},
            "strategy.name",
            "rule='median'",
        ),
        (
            {**MINIMAL, "data": {"num_learners": 4}, "sampling": {"min_learners": 5}},
            "sampling.min_learners",
            "`sampling.min_learners` must be <= the learners sampled per round (4 of",
        ),
    ],
)
def test_errors_name_field_and_value(raw: dict, field: str, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError) as info:
        validate_spec(raw)
    assert info.value.field == field
    assert f"`{field}`" in str(info.value)
    assert fragment in str(info.value)


def test_overrides_set_nested_fields(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntask: {name: digits-mlp}\n")
    spec = load_spec(path, ["rounds=7", "local.lr=0.2", "data.partition=shards(3)"])
    assert spec.rounds == 7 and spec.local.lr == 0.2
    assert spec.data.partition.kind == "shards"
    with pytest.raises(SpecError, match=r"key\.sub=value"):
        load_spec(path, ["rounds"])
    with pytest.raises(SpecError, match="`rounds`"):
        load_spec(path, ["rounds=many"])


def test_file_errors_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(bad)


def test_digest_ignores_location_but_not_content(tmp_path: Path) -> None:
    a = validate_spec({**MINIMAL, "base_dir": str(tmp_path)})
    b = validate_spec({**MINIMAL, "base_dir": "/elsewhere"})
    c = validate_spec({**MINIMAL, "rounds": 11})
    assert a.digest() == b.digest() != c.digest()


def test_schema_describes_sections() -> None:
    properties = schema()["properties"]
    for section in ("task", "data", "sampling", "local", "strategy", "guard", "runtime"):
        assert section in properties
