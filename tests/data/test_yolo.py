"""A YOLO-format dataset is checked before training: every fault names its file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clitools import fedpilot
from fedpilot.data.driving import make_driving
from fedpilot.data.yolo import read_yolo_dataset, read_yolo_labels
from fedpilot.errors import DataFileError, UserError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("yolo") / "set"
    make_driving(out, learners=1, images_per_learner=3, val_images=2, size=64, seed=1)
    return out


@pytest.fixture
def learner(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of one learner's data, free to break."""
    return Path(shutil.copytree(pristine / "learner-0", tmp_path / "learner-0"))


def test_boxes_read_as_rows_of_class_and_normalized_box(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.1\n\n3 0.1 0.9 0.05 0.2\n")  # a blank line is skipped
    boxes = read_yolo_labels(label, n_classes=4)
    np.testing.assert_array_equal(boxes, [[0, 0.5, 0.5, 0.2, 0.1], [3, 0.1, 0.9, 0.05, 0.2]])
    label.write_text("")
    assert read_yolo_labels(label, n_classes=4).shape == (0, 5)  # an image without objects


BAD_LINES = [
    ("0 0.5 0.5 0.2", "has 4 fields, expected 5"),
    ("0 0.5 0.5 0.2 0.1 0.3 0.4", "has 7 fields, expected 5"),
    ("car 0.5 0.5 0.2 0.1", "'car' is not a number"),
    ("0 0.5 nan 0.2 0.1", "non-finite"),
    ("4 0.5 0.5 0.2 0.1", "class 4 is not one of the 4 classes"),
    ("-1 0.5 0.5 0.2 0.1", "class -1 is not one of the 4 classes"),
    ("1.5 0.5 0.5 0.2 0.1", "class 1.5 is not one of the 4 classes"),
    ("0 1.2 0.5 0.2 0.1", "cx is 1.2, outside [0, 1]"),
    ("0 0.5 0.5 0.2 -0.1", "h is -0.1, outside [0, 1]"),
    ("0 0.5 0.5 0.0 0.1", "zero width or height"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_malformed_label_line_is_named_by_file_and_line(
    learner: Path, line: str, message: str
) -> None:
    label = learner / "labels" / "img-00001.txt"
    lines = label.read_text().splitlines()
    label.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(DataFileError) as caught:
        read_yolo_dataset(learner)
    assert str(caught.value).startswith(f"{label}:{len(lines) + 1}: ")
    assert message in str(caught.value)
    assert caught.value.path == str(label) and caught.value.line == len(lines) + 1
    assert isinstance(caught.value, UserError)


def test_an_image_without_a_label_file_is_named(learner: Path) -> None:
    (learner / "labels" / "img-00002.txt").unlink()
    with pytest.raises(DataFileError, match=r"img-00002\.png: has no label file .*img-00002\.txt"):
        read_yolo_dataset(learner)


def test_a_label_file_without_an_image_is_named(learner: Path) -> None:
    (learner / "images" / "img-00000.png").unlink()
    with pytest.raises(DataFileError, match=r"labels/img-00000\.txt: has no image in"):
        read_yolo_dataset(learner)


@pytest.mark.parametrize(
    ("data_yaml", "message"),
    [
        ("train: images\nval: images\n", "'names' is None"),
        ("names: [car]\nnc: 2\ntrain: images\n", "'nc' is 2 but 'names' has 1 classes"),
        ("names: [car]\nval: images\n", "has no 'train' key"),
        ("names: [car]\ntrain: pictures\n", "'train' names .*pictures.*, which is not a folder"),
        ("names: [car]\ntrain: [images, 3]\n", "'train' is .*: give a folder or a list"),
        ("- just\n- a list\n", "must be a mapping"),
        ("names: [car\n", "cannot be read as YAML"),
    ],
)
def test_a_malformed_data_yaml_is_named(learner: Path, data_yaml: str, message: str) -> None:
    (learner / "data.yaml").write_text(data_yaml)
    with pytest.raises(DataFileError, match=f"data.yaml: {message}"):
        read_yolo_dataset(learner)


def test_split_folders_must_sit_in_an_images_folder(learner: Path) -> None:
    (learner / "images").rename(learner / "pictures")
    (learner / "data.yaml").write_text("names: [a, b, c, d]\ntrain: pictures\n")
    with pytest.raises(DataFileError, match="is not inside an 'images' folder"):
        read_yolo_dataset(learner)


def test_a_missing_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"/nothing: no such file"):
        read_yolo_dataset(tmp_path / "nothing")


def test_the_cli_check_exits_2_naming_the_bad_line(learner: Path) -> None:
    ok = fedpilot("data", "check", str(learner), cwd=learner)
    assert ok.returncode == 0, ok.stderr
    assert '"images": 3' in ok.stdout
    label = learner / "labels" / "img-00000.txt"
    label.write_text("0 0.5 0.5 0.2 x\n")
    bad = fedpilot("data", "check", str(learner), cwd=learner)
    assert bad.returncode == 2
    assert bad.stderr == f"fedpilot: error: {label}:1: 'x' is not a number\n"
