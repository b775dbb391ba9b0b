"""Class-imbalance augmentation on the learner: images holding a minority class are
listed more than once, and their repeats are augmented, bounding-box aware.

A learner sees its own class counts only: a class is a minority one where it has fewer
than ``minority_share`` of the learner's boxes (a class the learner has no box of cannot
be oversampled). Every image holding a box of a minority class appears ``copies`` more
times per epoch; each repeat goes through Albumentations (blur, horizontal flip,
brightness and contrast, rotation and scale), with its boxes moved along and boxes that
leave the image dropped. The first appearance of an image is never altered, and the
learner still reports its number of distinct images as ``num-examples``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from fedpilot.data.yolo import DetectionImages

__all__ = ["Oversampling", "augmenter", "training_order"]


@dataclass(frozen=True)
class Oversampling:
    """The spec's ``task.params.oversample`` (every field optional)."""

    enabled: bool = True
    minority_share: float = 0.15
    """A class with fewer than this share of the learner's boxes is a minority class."""
    copies: int = 2
    """Extra, augmented appearances per epoch of an image holding a minority class."""
    blur: float = 0.3
    """Probability of a 3–5 px blur."""
    flip: float = 0.5
    """Probability of a horizontal flip."""
    contrast: float = 0.5
    """Probability of a brightness and contrast change of up to ±25%."""
    rotate: float = 10.0
    """Largest rotation, in degrees (0: none)."""
    scale: float = 0.2
    """Largest relative zoom in or out (0: none)."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | bool | None) -> Oversampling:
        """Read ``task.params.oversample``: a mapping, ``true`` (the defaults) or
        ``false``/absent (off).

        Raises:
            ValueError: An unknown key, or a value of the wrong type or out of range;
                the message names ``oversample.<key>`` and the value.
        """
        if params is None or params is False:
            return cls(enabled=False)
        if params is True:
            return cls()
        if not isinstance(params, Mapping):
            raise ValueError(f"`oversample` must be a mapping or true/false, got {params!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"`oversample` has no key {unknown[0]!r} (keys: {sorted(known)})")
        chosen = cls(**params)
        chosen._check()
        return chosen

    def _check(self) -> None:
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"`oversample.{name}` must be {rule}, got {getattr(self, name)!r}")

        if not isinstance(self.enabled, bool):
            raise bad("enabled", "true or false")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 1:
            raise bad("copies", "an integer >= 1")
        for name in ("minority_share", "blur", "flip", "contrast"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise bad(name, "a number in [0, 1]")
        if not isinstance(self.rotate, int | float) or not 0 <= self.rotate <= 180:
            raise bad("rotate", "a number of degrees in [0, 180]")
        if not isinstance(self.scale, int | float) or not 0 <= self.scale < 1:
            raise bad("scale", "a number in [0, 1)")


def minority_classes(images: DetectionImages, share: float) -> set[int]:
    """The classes the learner has some, but fewer than ``share`` of its, boxes of."""
    counts = images.class_counts()
    total = int(counts.sum())
    if total == 0:
        return set()
    return {int(c) for c in np.flatnonzero((counts > 0) & (counts < share * total))}


def training_order(images: DetectionImages, settings: Oversampling) -> list[int]:
    """Every image once, then ``copies`` repeats of each image holding a minority class."""
    order = list(range(len(images)))
    if not settings.enabled:
        return order
    minority = minority_classes(images, settings.minority_share)
    holders = [i for i, item in enumerate(images.images) if minority & set(item.classes.tolist())]
    return order + holders * settings.copies


def augmenter(settings: Oversampling, *, seed: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The augmentation of a repeat: takes and returns an Ultralytics label dict (``img``
    a BGR array, ``cls``, ``instances`` with normalized xywh boxes)."""
    import albumentations as A
    from ultralytics.utils.instance import Instances

    steps: list[Any] = [
        A.Blur(blur_limit=(3, 5), p=settings.blur),
        A.HorizontalFlip(p=settings.flip),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=settings.contrast),
    ]
    if settings.rotate or settings.scale:
        steps.append(
            A.Affine(
                rotate=(-settings.rotate, settings.rotate),
                scale=(1 - settings.scale, 1 + settings.scale),
                border_mode=0,
                p=1.0,
            )
        )
    compose = A.Compose(
        steps,
        bbox_params=A.BboxParams(
            format="yolo", label_fields=["classes"], min_visibility=0.3, clip=True
        ),
        seed=seed,
    )

    def augment(label: dict[str, Any]) -> dict[str, Any]:
        instances = label["instances"]
        instances.convert_bbox("xywh")
        if not instances.normalized:
            height, width = label["img"].shape[:2]
            instances.normalize(width, height)
        out = compose(image=label["img"], bboxes=instances.bboxes, classes=label["cls"].reshape(-1))
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        label["img"] = np.ascontiguousarray(out["image"])
        label["cls"] = np.asarray(out["classes"], dtype=np.float32).reshape(-1, 1)
        label["instances"] = Instances(
            boxes,
            np.zeros((0, 1000, 2), dtype=np.float32),
            None,
            bbox_format="xywh",
            normalized=True,
        )
        return label

    return augment
