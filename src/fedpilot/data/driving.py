"""A synthetic driving-scene set in YOLO format, so detection runs offline and in seconds.

Each image is a road seen from a car: sky, grass, a road narrowing to the horizon with
lane marks, and objects drawn as simple shapes at a depth-dependent size: cars,
pedestrians, cyclists and traffic lights. The classes are imbalanced on purpose (cars
common, cyclists and traffic lights rare), which is what the learner's oversampling is
for.

Learners are "regions" (non-IID): each region has its own lighting, fog, blur and class
mix, so a learner's images and labels differ measurably from another's. The server's
validation set mixes all regions. Everything follows from the seed: the same seed writes
byte-identical files.

Layout written under ``out``::

    data.yaml                    the pooled set (all learners' images; val/)
    learner-<i>/data.yaml        one learner's own data (train and val: its images)
    learner-<i>/images/*.png  learner-<i>/labels/*.txt
    val/data.yaml  val/images/*.png  val/labels/*.txt

Label lines are ``class cx cy w h`` with coordinates normalized to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

from fedpilot.errors import UserError

__all__ = ["CLASS_NAMES", "REGIONS", "Region", "make_driving"]

CLASS_NAMES = ("car", "pedestrian", "cyclist", "traffic_light")
"""The detector's classes, by class id."""

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Region:
    """How one region's images look: lighting, fog, blur and which objects it has."""

    name: str
    brightness: float  # multiplies every pixel; < 1 is dusk or night
    fog: float  # share of a flat grey blended in (lower contrast)
    blur: float  # Gaussian blur radius, in pixels at 160 px
    class_weights: tuple[float, float, float, float]  # car, pedestrian, cyclist, light


REGIONS = (
    #      name             brightness  fog   blur   car   pedestrian cyclist light
    Region("sunny-city",    1.0,        0.0,  0.0,  (0.55, 0.30,      0.08,   0.07)),
    Region("night-highway", 0.45,       0.0,  0.6,  (0.82, 0.08,      0.04,   0.06)),
    Region("foggy-suburb",  0.9,        0.45, 1.6,  (0.45, 0.35,      0.14,   0.06)),
)  # fmt: skip
"""Learner ``i`` lives in region ``i % len(REGIONS)``; val cycles through all of them."""

_HORIZON = 0.42  # the horizon's height, as a share of the image from the top
_MIN_BOX_PX = 3.0  # objects smaller than this after clipping are not drawn or labelled


def make_driving(
    out: Path,
    *,
    learners: int,
    images_per_learner: int = 30,
    val_images: int = 30,
    size: int = 160,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the driving set under ``out``; returns a summary (image and box counts).

    Raises:
        UserError: A count is below 1, the size below 64, or ``out`` is a non-empty
            directory or a file (the generator never mixes its files with others).
    """
    for name, value, least in (
        ("--learners", learners, 1),
        ("--images-per-learner", images_per_learner, 1),
        ("--val-images", val_images, 1),
        ("--size", size, 64),
    ):
        if value < least:
            raise UserError(f"{name} is {value}; it must be at least {least}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{str(out)!r} exists and is not an empty directory: give a new one")
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(out), "learners": []}
    for index in range(learners):
        region = REGIONS[index % len(REGIONS)]
        rng = np.random.default_rng([seed, index])
        folder = out / f"learner-{index}"
        counts = _write_split(folder, [region] * images_per_learner, size, rng)
        _write_yaml(folder / "data.yaml", train="images", val="images", region=region.name)
        summary["learners"].append(
            {"region": region.name, "images": images_per_learner, "boxes": counts}
        )
    val_regions = [REGIONS[i % len(REGIONS)] for i in range(val_images)]
    counts = _write_split(out / "val", val_regions, size, np.random.default_rng([seed, -1 % 2**32]))
    _write_yaml(out / "val" / "data.yaml", train="images", val="images", region="all")
    summary["val"] = {"images": val_images, "boxes": counts}
    _write_yaml(
        out / "data.yaml",
        train=[f"learner-{i}/images" for i in range(learners)],
        val="val/images",
        region="all",
    )
    return summary


def _write_yaml(path: Path, *, train: str | list[str], val: str, region: str) -> None:
    # No `path:` key: Ultralytics then resolves train/val against this file's folder.
    content = {
        "train": train,
        "val": val,
        "nc": len(CLASS_NAMES),
        "names": dict(enumerate(CLASS_NAMES)),
        "region": region,
    }
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def _write_split(
    folder: Path, regions: list[Region], size: int, rng: np.random.Generator
) -> dict[str, int]:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for number, region in enumerate(regions):
        image, labels = _scene(region, size, rng)
        stem = f"img-{number:05d}"
        image.save(folder / "images" / f"{stem}.png", optimize=False)
        lines = [f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for c, cx, cy, w, h in labels]
        (folder / "labels" / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines))
        for label in labels:
            counts[CLASS_NAMES[label[0]]] += 1
    return counts


def _scene(
    region: Region, size: int, rng: np.random.Generator
) -> tuple[Image.Image, list[tuple[int, float, float, float, float]]]:
    """One image and its labels (class, cx, cy, w, h normalized)."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    _road(draw, size, rng)
    n_objects = int(rng.integers(1, 7))
    classes = rng.choice(len(CLASS_NAMES), size=n_objects, p=np.asarray(region.class_weights))
    # Depth: 0 at the horizon, 1 at the bottom edge; far objects first, so near ones occlude.
    depths = np.sort(rng.uniform(0.15, 1.0, size=n_objects))
    boxes: list[tuple[int, Box]] = []
    for cls, depth in zip(classes.tolist(), depths.tolist(), strict=True):
        box = _DRAWERS[cls](draw, size, float(depth), rng)
        clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], size), min(box[3], size))
        if clipped[2] - clipped[0] >= _MIN_BOX_PX and clipped[3] - clipped[1] >= _MIN_BOX_PX:
            boxes.append((cls, clipped))
    image = _light(image, region, size, rng)
    labels = [
        (cls, (x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size)
        for cls, (x0, y0, x1, y1) in boxes
    ]
    return image, labels


def _road(draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
    horizon = _HORIZON * size
    sky = tuple(int(v) for v in rng.integers((90, 140, 190), (140, 190, 240)))
    grass = tuple(int(v) for v in rng.integers((40, 100, 30), (80, 150, 60)))
    draw.rectangle((0, 0, size, horizon), fill=sky)
    draw.rectangle((0, horizon, size, size), fill=grass)
    vanish = size / 2 + float(rng.uniform(-0.1, 0.1)) * size
    draw.polygon(
        [(vanish - 2, horizon), (vanish + 2, horizon), (size * 1.1, size), (-size * 0.1, size)],
        fill=(70, 70, 75),
    )
    # Dashed centre line: dashes shrink towards the horizon.
    for k in range(8):
        t0, t1 = (k + 0.2) / 8, (k + 0.6) / 8
        y0, y1 = horizon + (size - horizon) * t0**2, horizon + (size - horizon) * t1**2
        x0 = vanish + (size / 2 - vanish) * t0**2
        x1 = vanish + (size / 2 - vanish) * t1**2
        draw.line(
            [(x0, y0), (x1, y1)], fill=(235, 235, 220), width=max(1, round(size / 80 * t1**2 * 2))
        )


def _ground(
    size: int, depth: float, rng: np.random.Generator, spread: float
) -> tuple[float, float, float]:
    """Where an object at ``depth`` stands (x, bottom y) and its scale in pixels per unit."""
    horizon = _HORIZON * size
    bottom = horizon + (size - horizon) * depth
    scale = size * 0.35 * depth
    x = size / 2 + float(rng.uniform(-spread, spread)) * size * (0.3 + depth)
    return x, bottom, scale


def _car(draw: ImageDraw.ImageDraw, size: int, depth: float, rng: np.random.Generator) -> Box:
    x, bottom, s = _ground(size, depth, rng, 0.35)
    w, h = s * float(rng.uniform(0.8, 1.1)), s * float(rng.uniform(0.5, 0.65))
    color = tuple(int(v) for v in rng.integers(30, 230, size=3))
    x0, y0 = x - w / 2, bottom - h
    draw.rectangle((x0, y0 + h * 0.35, x0 + w, bottom - h * 0.12), fill=color)
    draw.rectangle(
        (x0 + w * 0.2, y0, x0 + w * 0.8, y0 + h * 0.4), fill=tuple(c // 2 for c in color)
    )
    r = h * 0.14
    for wx in (x0 + w * 0.22, x0 + w * 0.78):
        draw.ellipse((wx - r, bottom - 2 * r, wx + r, bottom), fill=(15, 15, 15))
    return x0, y0, x0 + w, bottom


def _pedestrian(
    draw: ImageDraw.ImageDraw, size: int, depth: float, rng: np.random.Generator
) -> Box:
    x, bottom, s = _ground(size, depth, rng, 0.6)
    h, w = s * float(rng.uniform(0.8, 1.0)), s * 0.28
    shirt = tuple(int(v) for v in rng.integers(40, 250, size=3))
    head = w * 0.45
    draw.ellipse((x - head / 2, bottom - h, x + head / 2, bottom - h + head), fill=(225, 185, 150))
    draw.rectangle((x - w / 2, bottom - h + head, x + w / 2, bottom - h * 0.45), fill=shirt)
    draw.rectangle((x - w * 0.4, bottom - h * 0.45, x + w * 0.4, bottom), fill=(40, 40, 90))
    return x - w / 2, bottom - h, x + w / 2, bottom


def _cyclist(draw: ImageDraw.ImageDraw, size: int, depth: float, rng: np.random.Generator) -> Box:
    x, bottom, s = _ground(size, depth, rng, 0.45)
    w, h = s * 0.75, s * 0.85
    r = w * 0.22
    for wx in (x - w / 2 + r, x + w / 2 - r):
        draw.ellipse(
            (wx - r, bottom - 2 * r, wx + r, bottom),
            outline=(20, 20, 20),
            width=max(1, round(r / 4)),
        )
    jersey = tuple(int(v) for v in rng.integers(120, 256, size=3))
    draw.line(
        [(x - w / 2 + r, bottom - r), (x, bottom - 2.2 * r), (x + w / 2 - r, bottom - r)],
        fill=(150, 20, 20),
        width=max(1, round(r / 3)),
    )
    draw.rectangle((x - w * 0.12, bottom - h * 0.8, x + w * 0.12, bottom - 2.2 * r), fill=jersey)
    draw.ellipse((x - w * 0.1, bottom - h, x + w * 0.1, bottom - h * 0.8), fill=(225, 185, 150))
    return x - w / 2, bottom - h, x + w / 2, bottom


def _traffic_light(
    draw: ImageDraw.ImageDraw, size: int, depth: float, rng: np.random.Generator
) -> Box:
    # Lights stand beside the road, their box (the lamp housing) above the ground.
    side = 1 if rng.random() < 0.5 else -1
    horizon = _HORIZON * size
    bottom = horizon + (size - horizon) * depth
    s = size * 0.35 * depth
    x = size / 2 + side * size * (0.12 + 0.4 * depth)
    w, h = s * 0.22, s * 0.6
    top = bottom - s * 1.5
    draw.line([(x, top + h), (x, bottom)], fill=(60, 60, 60), width=max(1, round(w / 4)))
    draw.rectangle((x - w / 2, top, x + w / 2, top + h), fill=(25, 25, 25))
    lit = int(rng.integers(0, 3))
    for k, color in enumerate(((255, 40, 30), (255, 200, 0), (40, 230, 80))):
        cy = top + h * (k + 0.5) / 3
        r = w * 0.32
        draw.ellipse((x - r, cy - r, x + r, cy + r), fill=color if k == lit else (70, 70, 70))
    return x - w / 2, top, x + w / 2, top + h


_DRAWERS = (_car, _pedestrian, _cyclist, _traffic_light)


def _light(image: Image.Image, region: Region, size: int, rng: np.random.Generator) -> Image.Image:
    """The region's look: blur, fog, brightness and a little sensor noise."""
    if region.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(region.blur * size / 160))
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels * (1 - region.fog) + 170.0 * region.fog
    pixels = pixels * region.brightness + rng.normal(0.0, 3.0, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
