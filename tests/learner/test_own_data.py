"""A learner's own data (``fedpilot learner --data PATH``, a node's ``data-path``): an .npz
file or a directory, read by the Task's ``load_data`` (a user's task reads its own layout)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from _apps.folder_task import blobs, write_folder
from fedpilot.cli.learner import _node_data
from fedpilot.errors import TaskError, UserError
from fedpilot.fleet._convention import reply_from_message
from fedpilot.fleet._messages import _to_message
from fedpilot.learner import make_clientapp
from fedpilot.learner.core import TaskLearner
from fedpilot.learner.protocol import train_config
from fedpilot.spec import FederationSpec, validate_spec
from fedpilot.tasks._base import TrainSettings
from fedpilot.types import Instruction, Reply

APPS_DIR = Path(__file__).parents[1] / "_apps"
CONFIG = train_config(TrainSettings(epochs=2, batch_size=8, lr=0.1, seed=11), 1)


def _spec(tmp_path: Path, task: dict[str, Any]) -> FederationSpec:
    return validate_spec(
        {
            "name": "own-data",
            "seed": 5,
            "task": task,
            "data": {"num_learners": 2},
            "output_dir": str(tmp_path / "runs"),
            "base_dir": str(APPS_DIR),
        }
    )


def _via_node(spec: FederationSpec, data: Path, instruction: Instruction) -> Reply:
    """What a SuperNode started by ``fedpilot learner --data PATH`` runs, without Flower's
    network: the CLI's node data, its ``data-path`` node config, fedpilot's ClientApp."""
    node = _node_data(None, data)
    assert f'data-path="{data.resolve()}"' in node.node_config(None)
    assert node.path is not None
    context = Context(
        run_id=0,
        node_id=1,
        node_config={"data-path": str(node.path.resolve())},
        state=RecordDict(),
        run_config={},
    )
    message = _to_message(instruction, node_id=1, message_id=f"m{time.monotonic_ns()}")
    return reply_from_message("1", instruction, make_clientapp(spec)(message, context))


def test_digits_from_a_directory_train_exactly_as_from_the_npz_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"name": "digits-mlp", "params": {"hidden": 8}})
    learner = TaskLearner(spec)
    share = learner.data(1)
    assert share.test is not None
    arrays = {
        "x_train": share.train.x,
        "y_train": share.train.y,
        "x_test": share.test.x,
        "y_test": share.test.y,
    }
    np.savez(tmp_path / "mine.npz", **arrays)
    (tmp_path / "mine").mkdir()
    for name, array in arrays.items():
        np.save(tmp_path / "mine" / f"{name}.npy", array)
    weights = learner.task.get_weights()
    sources = (1, tmp_path / "mine.npz", tmp_path / "mine")
    outs = [learner.train(source, weights, CONFIG) for source in sources]
    assert outs[0].num_examples == outs[1].num_examples == outs[2].num_examples == len(share.train)
    for other in outs[1:]:
        for a, b in zip(outs[0].weights, other.weights, strict=True):
            np.testing.assert_array_equal(a, b)
    # The same directory through `fedpilot learner --data DIR`'s node config and ClientApp.
    evaluated = _via_node(spec, tmp_path / "mine", Instruction("evaluate", weights, {}))
    assert evaluated.ok, evaluated.error
    assert evaluated.num_examples == len(share.test)


def test_a_directory_in_the_wrong_layout_fails_the_reply_naming_it(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"name": "digits-mlp", "params": {"hidden": 8}})
    (tmp_path / "empty").mkdir()
    weights = TaskLearner(spec).task.get_weights()
    # Flower turns the ClientApp's exception into an error reply; here it is raised.
    with pytest.raises(TaskError, match=r"missing \['x_train\.npy', 'y_train\.npy'\]") as info:
        _via_node(spec, tmp_path / "empty", Instruction("train", weights, CONFIG))
    assert str(tmp_path / "empty") in str(info.value)


def test_the_cli_takes_an_existing_file_or_directory_only(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"existing \.npz file or directory"):
        _node_data(None, tmp_path / "nowhere")
    with pytest.raises(UserError, match="exactly one"):
        _node_data("0/2", tmp_path)
    assert _node_data(None, tmp_path).path == tmp_path


def test_a_users_task_reads_its_own_folder_of_files(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"name": "folder_task:FolderTask"})
    x, y = blobs(30, seed=1)
    write_folder(tmp_path / "site" / "train", x[:24], y[:24])
    write_folder(tmp_path / "site" / "test", x[24:], y[24:])
    learner = TaskLearner(spec)
    weights = learner.task.get_weights()
    trained = learner.train(tmp_path / "site", weights, CONFIG)
    assert trained.num_examples == 24 and trained.metrics["loss"] > 0
    assert not np.array_equal(trained.weights[0], weights[0])
    # Through the ClientApp a node started with `--data site` runs: same data, same model.
    wire = _via_node(spec, tmp_path / "site", Instruction("train", weights, CONFIG))
    assert wire.ok, wire.error
    for a, b in zip(trained.weights, wire.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    evaluated = learner.evaluate(tmp_path / "site", trained.weights, {})
    assert evaluated.num_examples == 6 and 0 <= evaluated.metrics["accuracy"] <= 1
    # The task's own layout, its own error: the default array layout does not apply.
    (tmp_path / "bare").mkdir()
    with pytest.raises(TaskError, match="must hold a train/ folder"):
        learner.train(tmp_path / "bare", weights, CONFIG)
