"""Every extension point resolves names the same way through its Registry: every built-in,
a user's ``package.module:Class``, and a clear refusal (naming the field) of anything else."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import APPS_DIR
from fedpilot.aggregation import AGGREGATION_RULES
from fedpilot.compression import CODECS
from fedpilot.errors import SpecError
from fedpilot.guard import GUARDS
from fedpilot.registry import Registry
from fedpilot.selection import SELECTORS
from fedpilot.strategy import STRATEGIES
from fedpilot.tasks import TASKS

# registry, spec field, source of a concrete user subclass
CASES: dict[str, tuple[Registry[Any], str, str]] = {
    "strategy": (
        STRATEGIES,
        "strategy.name",
        """
        from fedpilot.aggregation import FedAvgStep
        from fedpilot.spec.sections import FedAvgStrategy
        from fedpilot.strategy import Strategy as Base

        class Mine(Base):
            Params = FedAvgStrategy

            def server_optimizer(self, *, num_learners):
                return FedAvgStep(1.0)
        """,
    ),
    "aggregation rule": (
        AGGREGATION_RULES,
        "aggregation.rule",
        """
        from fedpilot.aggregation import AggregationRule as Base, RuleOutcome

        class Mine(Base):
            def combine(self, rows, out):
                return RuleOutcome()
        """,
    ),
    "selector": (
        SELECTORS,
        "selection.name",
        """
        from fedpilot.selection import Selection, Selector as Base

        class Mine(Base):
            def select(self, *, candidates, size, ctx, rng):
                return Selection()
        """,
    ),
    "guard": (
        GUARDS,
        "guard.name",
        """
        from fedpilot.guard import Guard as Base, Verdict

        class Mine(Base):
            def judge(self, *, candidate, stable):
                return Verdict(True)
        """,
    ),
    "codec": (
        CODECS,
        "compression.codec",
        """
        from fedpilot.compression import Codec as Base

        class Mine(Base):
            def encode(self, array, *, rng):
                return [array]

            def decode(self, payload, *, shape):
                return payload[0]
        """,
    ),
    "task": (
        TASKS,
        "task.name",
        """
        from fedpilot.tasks import Task as Base

        class Mine(Base):
            pass
        """,
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Registry[Any], str, Path, str]:
    registry, field, source = CASES[request.param]
    module = f"user_{request.param.replace(' ', '_')}"
    text = textwrap.dedent(source) + textwrap.dedent(
        """
        class Abstract(Base):
            pass

        class NotOne:
            pass
        """
    )
    (tmp_path / f"{module}.py").write_text(text)
    return registry, field, tmp_path, module


def test_every_builtin_resolves_to_itself(case: tuple[Registry[Any], str, Path, str]) -> None:
    registry = case[0]
    assert len(registry) > 0
    for name, cls in registry.items():
        assert registry.resolve(name) is cls and issubclass(cls, registry.base)


def test_a_users_class_resolves(case: tuple[Registry[Any], str, Path, str]) -> None:
    registry, _, folder, module = case
    if registry is TASKS:  # Task is abstract: take a user's concrete task from the test apps
        folder, module, name = APPS_DIR, "folder_task", "FolderTask"
    else:
        name = "Mine"
    cls = registry.resolve(f"{module}:{name}", base_dir=folder)
    assert cls.__name__ == name and issubclass(cls, registry.base)


def test_a_non_subclass_and_an_abstract_class_are_refused_naming_the_field(
    case: tuple[Registry[Any], str, Path, str],
) -> None:
    registry, field, folder, module = case
    with pytest.raises(SpecError, match="must name a subclass of") as info:
        registry.resolve(f"{module}:NotOne", base_dir=folder)
    assert info.value.field == field and f"`{field}`" in str(info.value)
    abstract = "Mine" if registry is TASKS else "Abstract"
    with pytest.raises(SpecError, match="is abstract; implement") as info:
        registry.resolve(f"{module}:{abstract}", base_dir=folder)
    assert info.value.field == field
    with pytest.raises(SpecError, match=r"package\.module:Class") as info:
        registry.resolve("no-such-builtin")
    assert info.value.field == field
