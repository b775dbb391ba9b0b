"""build_task: built-in names, a user's `module:Class`, and errors that name the field."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from fedpilot.errors import SpecError
from fedpilot.spec.sections import DataSpec, TaskSpec
from fedpilot.tasks import BUILTIN_TASKS, DigitsMLP, build_task, resolve_task_class

DATA = DataSpec(num_learners=3)

USER_MODULE = """
from torch import nn

from fedpilot.tasks import Task, TorchTask


class Tiny(TorchTask):
    default_dataset = "digits"

    def __init__(self, *, width: int = 4, **kwargs):
        super().__init__(width=width, **kwargs)
        if width < 1:
            raise ValueError(f"`width` must be >= 1, got width={width}")
        self.width = width

    def build_model(self):
        return nn.Sequential(nn.Linear(64, self.width), nn.Linear(self.width, 10))


class Abstract(Task):
    pass


NOT_A_CLASS = 3
"""


@pytest.fixture
def user_module(tmp_path: Path) -> str:
    # A unique name per test: imported modules stay in sys.modules.
    name = f"user_tasks_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    return name


def test_builtin_by_name_with_params() -> None:
    task = build_task(TaskSpec(name="digits-mlp", params={"hidden": 16}), DATA, seed=4)
    assert isinstance(task, DigitsMLP)
    assert task.hidden == 16 and task.seed == 4 and task.data_spec == DATA
    assert task.get_weights()[0].shape == (16, 64)


def test_user_class_from_base_dir(tmp_path: Path, user_module: str) -> None:
    path_before = list(sys.path)
    spec = TaskSpec(name=f"{user_module}:Tiny", params={"width": 3})
    task = build_task(spec, DATA, seed=1, base_dir=tmp_path)
    assert type(task).__name__ == "Tiny"
    assert task.get_weights()[0].shape == (3, 64)
    assert len(task.learner_data(0).train) > 0
    assert sys.path == path_before


def test_unknown_builtin_names_the_value_and_the_choices() -> None:
    with pytest.raises(SpecError) as info:
        build_task(TaskSpec(name="resnet"), DATA, seed=0)
    assert info.value.field == "task.name"
    message = str(info.value)
    assert "'resnet'" in message
    assert all(name in message for name in BUILTIN_TASKS)


def test_missing_module(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no_such_module") as info:
        build_task(TaskSpec(name="no_such_module:Task"), DATA, seed=0, base_dir=tmp_path)
    assert info.value.field == "task.name"


@pytest.mark.parametrize(
    ("attr", "message"), [("NOT_A_CLASS", "subclass"), ("Abstract", "abstract"), ("Nope", "Nope")]
)
def test_not_a_concrete_task(tmp_path: Path, user_module: str, attr: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        resolve_task_class(f"{user_module}:{attr}", tmp_path)
    assert info.value.field == "task.name"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hiden": 16}, "accepted: hidden"),
        ({"hidden": 0}, "hidden"),
        ({"seed": 3}, "seed"),
    ],
)
def test_bad_params_name_the_field(params: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        build_task(TaskSpec(name="digits-mlp", params=params), DATA, seed=0)
    assert info.value.field == "task.params"


def test_user_class_bad_param_value(tmp_path: Path, user_module: str) -> None:
    spec = TaskSpec(name=f"{user_module}:Tiny", params={"width": 0})
    with pytest.raises(SpecError, match="width") as info:
        build_task(spec, DATA, seed=0, base_dir=tmp_path)
    assert info.value.field == "task.params"


def test_flower_clientapp_spec_has_no_task() -> None:
    spec = TaskSpec(flower_clientapp="pkg.mod:app", initial_weights="w.npz")
    with pytest.raises(SpecError, match="flower_clientapp") as info:
        build_task(spec, DATA, seed=0)
    assert info.value.field == "task.name"
