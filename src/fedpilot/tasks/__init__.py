"""Tasks: the user's model and local training, and the built-in ones.

:func:`build_task` turns the spec's ``task`` section into a :class:`Task`: a built-in
name from :data:`TASKS`, or ``package.module:Class`` naming a user's subclass.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fedpilot.errors import SpecError
from fedpilot.registry import Registry
from fedpilot.spec.sections import DataSpec, TaskSpec
from fedpilot.tasks._base import ModelArtifact, Task, TrainSettings
from fedpilot.tasks.builtin import DigitsMLP, DigitsSGD, Mnist1dCNN, SyntheticLogReg
from fedpilot.tasks.sklearn import SklearnLinearTask
from fedpilot.tasks.torch import TorchTask
from fedpilot.tasks.yolo import YoloTask

__all__ = [
    "BUILTIN_TASKS",
    "TASKS",
    "DigitsMLP",
    "DigitsSGD",
    "Mnist1dCNN",
    "ModelArtifact",
    "SklearnLinearTask",
    "SyntheticLogReg",
    "Task",
    "TorchTask",
    "TrainSettings",
    "YoloTask",
    "build_task",
    "resolve_task_class",
]

TASKS: Registry[Task] = Registry("task", Task, field="task.name")
"""Built-in tasks by their spec name (``task.name``)."""
for _name, _cls in (
    ("digits-mlp", DigitsMLP),
    ("digits-sgd", DigitsSGD),
    ("mnist1d-cnn", Mnist1dCNN),
    ("synthetic-logreg", SyntheticLogReg),
    ("yolo", YoloTask),
):
    TASKS.add(_name, _cls)

BUILTIN_TASKS = TASKS
"""The former name of :data:`TASKS`."""


def resolve_task_class(name: str, base_dir: Path | None = None) -> type[Task]:
    """The Task class a spec's ``task.name`` refers to (a built-in or ``package.module:Class``).

    Raises:
        SpecError: Unknown name, failed import, or not a concrete Task subclass.
    """
    return TASKS.resolve(name, base_dir=base_dir)


def build_task(
    task_spec: TaskSpec, data: DataSpec, seed: int, base_dir: Path | None = None
) -> Task:
    """Instantiate the spec's task with its ``params``.

    Args:
        task_spec: The spec's ``task`` section; ``name`` must be set.
        data: The spec's ``data`` section, handed to the task.
        seed: The run seed.
        base_dir: The spec's folder, importable while a user's class is imported.

    Returns:
        The task; its model and data are built lazily, on first use.

    Raises:
        SpecError: The name cannot be resolved (``task.name``) or the class does not
            accept the params (``task.params``).
    """
    if task_spec.name is None:
        raise SpecError(
            "`task.name` is not set: a spec with `flower_clientapp` has no fedpilot Task",
            field="task.name",
        )
    cls = resolve_task_class(task_spec.name, base_dir)
    params = dict(task_spec.params)
    reserved = sorted({"data", "seed"} & set(params))
    if reserved:
        raise SpecError(
            f"`task.params` must not set {reserved}: they come from the spec's `data` "
            "section and `seed`",
            field="task.params",
        )
    try:
        inspect.signature(cls).bind(data=data, seed=seed, **params)
    except TypeError as exc:
        raise SpecError(
            f"`task.params` {params} do not fit task {task_spec.name!r}{_accepted(cls)}: {exc}",
            field="task.params",
        ) from exc
    try:
        return cls(data=data, seed=seed, **params)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"`task.params` for task {task_spec.name!r}: {exc}", field="task.params"
        ) from exc


def _accepted(cls: type[Task]) -> str:
    names = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in {"data", "seed"}
    ]
    return f" (accepted: {', '.join(names)})" if names else " (it takes no params)"
