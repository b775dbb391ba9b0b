"""A YOLO-format dataset on disk, read and checked before any training starts.

The layout is Ultralytics': a ``data.yaml`` naming the classes and the image folders,
and for every image ``.../images/<stem>.<ext>`` a label file ``.../labels/<stem>.txt``
(the last ``images`` folder of the path swapped for ``labels``) with one line per box,
``class cx cy w h``, coordinates normalized to [0, 1]. An empty label file is an image
without objects.

Ultralytics itself skips a bad label with a warning and trains on; a learner that
silently drops half its boxes reports a misleading ``num-examples`` and a worse model.
So every check here fails with a :class:`~fedpilot.errors.DataFileError` naming the
file and line, and the CLI exits 2 with that message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from fedpilot.errors import DataFileError

__all__ = [
    "IMAGE_SUFFIXES",
    "DetectionImages",
    "YoloDataset",
    "YoloImage",
    "read_yolo_dataset",
    "read_yolo_labels",
]

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
"""The image files a folder's listing counts (case-insensitive)."""


@dataclass(frozen=True)
class YoloImage:
    """One image, its label file, and its boxes as rows ``class, cx, cy, w, h``."""

    image: Path
    label: Path
    boxes: npt.NDArray[np.float64]

    @property
    def classes(self) -> npt.NDArray[np.int64]:
        return self.boxes[:, 0].astype(np.int64)


@dataclass(frozen=True)
class YoloDataset:
    """A checked YOLO dataset: its ``data.yaml``, class names and the two splits' images."""

    yaml_file: Path
    names: tuple[str, ...]
    train: tuple[YoloImage, ...]
    val: tuple[YoloImage, ...]

    @property
    def num_examples(self) -> int:
        """The training images: what a learner reports as ``num-examples``."""
        return len(self.train)

    def split(self, name: str) -> DetectionImages:
        """The ``train`` or ``val`` images."""
        return DetectionImages(self.train if name == "train" else self.val, self.names)

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Boxes per class name in ``split`` (``train`` or ``val``)."""
        counts = self.split(split).class_counts()
        return dict(zip(self.names, counts.tolist(), strict=True))


@dataclass(frozen=True)
class DetectionImages:
    """Labelled images of one split, as a detection task trains or evaluates on them.

    ``len()`` is the number of images: what a learner reports as ``num-examples``.
    """

    images: tuple[YoloImage, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Iterable[int]) -> DetectionImages:
        """The images at ``indices`` (learner-level tuning splits a learner's data so)."""
        return DetectionImages(tuple(self.images[int(i)] for i in indices), self.names)

    def class_counts(self) -> npt.NDArray[np.int64]:
        """Boxes per class id."""
        counts = np.zeros(len(self.names), dtype=np.int64)
        for item in self.images:
            counts += np.bincount(item.classes, minlength=len(self.names))
        return counts


def read_yolo_dataset(path: Path) -> YoloDataset:
    """Read and check the dataset of a ``data.yaml`` file, or of a folder holding one.

    Raises:
        DataFileError: ``data.yaml`` is missing or malformed (no ``names``, no ``train``,
            ``nc`` disagreeing with ``names``, a split folder that does not exist or is not
            inside an ``images`` folder); an image has no label file or a label file no
            image; or a label line is malformed. The message names the file and line.
    """
    yaml_file = path / "data.yaml" if path.is_dir() else path
    if not yaml_file.is_file():
        raise DataFileError(
            "no such file: a YOLO dataset is a data.yaml file, or a folder holding one",
            path=str(yaml_file),
        )
    try:
        content = yaml.safe_load(yaml_file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataFileError(f"cannot be read as YAML ({exc})", path=str(yaml_file)) from exc
    if not isinstance(content, dict):
        raise DataFileError("must be a mapping with names, train and val", path=str(yaml_file))
    names = _names(content, yaml_file)
    root = yaml_file.parent / str(content.get("path", ""))
    if "train" not in content:
        raise DataFileError(
            "has no 'train' key: name the training image folder(s)", path=str(yaml_file)
        )
    train = _split(content["train"], "train", root, yaml_file, len(names))
    val = _split(content["val"], "val", root, yaml_file, len(names)) if content.get("val") else ()
    return YoloDataset(yaml_file=yaml_file, names=names, train=train, val=val)


def read_yolo_labels(path: Path, *, n_classes: int) -> npt.NDArray[np.float64]:
    """The boxes of one label file as an (n, 5) array; every line checked.

    Raises:
        DataFileError: A line does not have five fields, a field is not a number, the
            class is not an integer in ``[0, n_classes)``, a coordinate lies outside
            [0, 1], or the box has zero width or height. Names ``path:line``.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot be read ({exc})", path=str(path)) from exc
    rows: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append(_box(line, str(path), number, n_classes))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _box(line: str, path: str, number: int, n_classes: int) -> list[float]:
    fields = line.split()
    if len(fields) != 5:
        raise DataFileError(
            f"has {len(fields)} fields, expected 5: 'class cx cy w h' (segments and keypoints "
            "are not supported)",
            path=path,
            line=number,
        )
    try:
        values = [float(field) for field in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_number(f))
        raise DataFileError(f"{bad!r} is not a number", path=path, line=number) from None
    if not all(math.isfinite(v) for v in values):
        raise DataFileError("has a non-finite value", path=path, line=number)
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < n_classes:
        raise DataFileError(
            f"class {fields[0]} is not one of the {n_classes} classes "
            f"(an integer in 0..{n_classes - 1})",
            path=path,
            line=number,
        )
    for name, value in zip(("cx", "cy", "w", "h"), values[1:], strict=True):
        if not 0.0 <= value <= 1.0:
            raise DataFileError(
                f"{name} is {value}, outside [0, 1]: coordinates are normalized by the image size",
                path=path,
                line=number,
            )
    if values[3] == 0.0 or values[4] == 0.0:
        raise DataFileError("the box has zero width or height", path=path, line=number)
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _names(content: dict[str, Any], yaml_file: Path) -> tuple[str, ...]:
    names = content.get("names")
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataFileError(
            f"'names' is {names!r}: give the class names as a list, or a mapping from "
            "0, 1, … to names",
            path=str(yaml_file),
        )
    if "nc" in content and content["nc"] != len(names):
        raise DataFileError(
            f"'nc' is {content['nc']!r} but 'names' has {len(names)} classes", path=str(yaml_file)
        )
    return tuple(names)


def _split(
    entry: object, key: str, root: Path, yaml_file: Path, n_classes: int
) -> tuple[YoloImage, ...]:
    folders = entry if isinstance(entry, list) else [entry]
    if not folders or not all(isinstance(f, str) for f in folders):
        raise DataFileError(
            f"'{key}' is {entry!r}: give a folder or a list of folders", path=str(yaml_file)
        )
    images: list[YoloImage] = []
    for folder in folders:
        images.extend(_folder(root / str(folder), key, yaml_file, n_classes))
    return tuple(images)


def _folder(folder: Path, key: str, yaml_file: Path, n_classes: int) -> Iterable[YoloImage]:
    if not folder.is_dir():
        raise DataFileError(
            f"'{key}' names {str(folder)!r}, which is not a folder", path=str(yaml_file)
        )
    parts = folder.resolve().parts
    if "images" not in parts:
        raise DataFileError(
            f"'{key}' folder {str(folder)!r} is not inside an 'images' folder: labels are found "
            "by swapping the path's last 'images' for 'labels'",
            path=str(yaml_file),
        )
    cut = len(parts) - 1 - parts[::-1].index("images")
    labels = Path(*parts[:cut], "labels", *parts[cut + 1 :])
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    paired: set[Path] = set()
    for image in files:
        label = labels / image.relative_to(folder).with_suffix(".txt")
        if not label.is_file():
            raise DataFileError(
                f"has no label file {str(label)!r} (an image without objects has an empty one)",
                path=str(image),
            )
        paired.add(label)
        yield YoloImage(
            image=image, label=label, boxes=read_yolo_labels(label, n_classes=n_classes)
        )
    if labels.is_dir():
        for label in sorted(labels.rglob("*.txt")):
            if label not in paired:
                raise DataFileError(f"has no image in {str(folder)!r}", path=str(label))
