"""``fedpilot data``: make the synthetic driving set; check a YOLO dataset before a run.

Bad input (a bad count, a non-empty output folder, a malformed label) exits 2 with a
message naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedpilot.data.driving import make_driving
from fedpilot.data.yolo import read_yolo_dataset

data_app = typer.Typer(
    help="Datasets: generate the synthetic driving set, check a YOLO-format dataset.",
    no_args_is_help=True,
)


@data_app.command("make-driving")
def make_driving_command(
    out: Annotated[Path, typer.Argument(help="A new (or empty) folder to write into.")],
    learners: Annotated[int, typer.Option("--learners", help="Learners, one region each.")],
    images_per_learner: Annotated[
        int, typer.Option("--images-per-learner", help="Training images per learner.")
    ] = 30,
    val_images: Annotated[
        int, typer.Option("--val-images", help="The server's validation images.")
    ] = 30,
    size: Annotated[int, typer.Option("--size", help="Image width and height, pixels.")] = 160,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same files.")] = 0,
) -> None:
    """Write a synthetic driving-scene set in YOLO format: one folder per learner, and val/."""
    summary = make_driving(
        out,
        learners=learners,
        images_per_learner=images_per_learner,
        val_images=val_images,
        size=size,
        seed=seed,
    )
    print(json.dumps(summary, indent=2))


@data_app.command("check")
def check_command(
    path: Annotated[Path, typer.Argument(help="A data.yaml file, or a folder holding one.")],
) -> None:
    """Check a YOLO-format dataset: every image paired with a label file, every line valid."""
    dataset = read_yolo_dataset(path)
    summary = {
        "data_yaml": str(dataset.yaml_file),
        "names": list(dataset.names),
        "train": {"images": len(dataset.train), "boxes": dataset.class_counts("train")},
        "val": {"images": len(dataset.val), "boxes": dataset.class_counts("val")},
    }
    print(json.dumps(summary, indent=2))
