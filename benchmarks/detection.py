"""Federated YOLO (3 vehicles, non-IID regions) vs centralized training on the pooled
images with the same total epochs, on the generated driving set.

Federated: `examples/driving-yolo.yaml` (YOLOv8n, 5 rounds × 5 local epochs at batch 8,
FedAvg, guard on mAP@0.5:0.95). Centralized: the same spec with `--centralized`, i.e. 5 × 5
epochs over all three learners' images, with the same batch and learning rates. Both are
scored by the server on the same held-out images of all regions. As in the seed system,
both fine-tune a pretrained detector: one trained beforehand, centrally, on a separate
generated set (other scenes of all regions, standing in for a public driving dataset);
`--from-scratch` compares from random weights instead. Target: federated mAP@0.5 within 10
points of centralized. Also reported: each learner's local training time per round.

Run in the detection virtualenv:
``.venv-detect/bin/python benchmarks/detection.py [--seeds 0 1] [--device cpu|0]
[--from-scratch]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Check, Table, write_results
from fedpilot.data.driving import make_driving
from fedpilot.launch import run_centralized, run_federation
from fedpilot.spec import load_spec
from fedpilot.spec.sections import DataSpec
from fedpilot.tasks import TrainSettings, YoloTask

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "driving-yolo.yaml"
TARGET_POINTS = 10.0


def _train_seconds(run_dir: Path) -> list[float]:
    """Each accepted update's local training time (the learner's own clock)."""
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [
        e["metrics"]["sys.train_seconds"]
        for e in map(json.loads, lines)
        if e["event"] == "UpdateAccepted"
    ]


def pretrain(out: Path, *, epochs: int, images: int, device: str) -> Path:
    """A detector trained centrally on its own generated scenes (seed 1000: none of the
    benchmark's images), saved as an Ultralytics checkpoint."""
    make_driving(out / "public", learners=3, images_per_learner=images, val_images=1, seed=1000)
    task = YoloTask(
        root=str(out / "public"), imgsz=160, seed=1000, device=device,
        data=DataSpec(num_learners=3),
    )  # fmt: skip
    settings = TrainSettings(epochs=epochs, batch_size=16, lr=0.01, momentum=0.9, seed=1000)
    task.train(task.pooled_train_data(), settings)
    checkpoint = out / "pretrained.pt"
    task.save_checkpoint(checkpoint)
    return checkpoint


def _curve(result: Any, metric: str) -> list[float]:
    return [round(float(r.metrics.get(metric, float("nan"))), 4) for r in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu", help="cpu, or a GPU index such as 0")
    parser.add_argument("--images", type=int, default=100, help="images per learner")
    parser.add_argument("--rounds", type=int, default=None, help="default: the example's")
    parser.add_argument("--from-scratch", action="store_true", help="no pretrained detector")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--pretrain-images", type=int, default=60, help="per region")
    args = parser.parse_args()

    rows: list[list[Any]] = []
    curves = Table(
        "Server mAP@0.5 / mAP@0.5:0.95 per round", ["seed", "run", "mAP@0.5", "mAP@0.5:0.95"]
    )
    data: dict[str, Any] = {"runs": []}
    gaps: list[float] = []
    per_learner: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fedpilot-bench-detection-") as tmp:
        start: list[str] = []
        pretrain_s = 0.0
        if not args.from_scratch:
            started = time.perf_counter()
            checkpoint = pretrain(
                Path(tmp), epochs=args.pretrain_epochs, images=args.pretrain_images,
                device=args.device,
            )  # fmt: skip
            pretrain_s = time.perf_counter() - started
            start = [f"task.params.weights={checkpoint}"]
            print(f"pretrained in {pretrain_s:.0f} s", flush=True)
        for seed in args.seeds:
            root = Path(tmp) / f"driving-{seed}"
            make_driving(root, learners=3, images_per_learner=args.images, val_images=60, seed=seed)
            overrides = [
                f"seed={seed}",
                f"task.params.root={root}",
                f"task.params.device={args.device}",
                *([f"rounds={args.rounds}"] if args.rounds else []),
                *start,
                "tracking.enabled=false",
                f"output_dir={Path(tmp) / f'runs-{seed}'}",
            ]
            spec = load_spec(EXAMPLE, overrides)
            started = time.perf_counter()
            federated = run_federation(spec)
            fed_s = time.perf_counter() - started
            (run_dir,) = [p for p in spec.output_dir.iterdir() if (p / "events.jsonl").exists()]
            seconds = _train_seconds(run_dir)
            per_learner += seconds
            started = time.perf_counter()
            centralized = run_centralized(spec, default_tracking=False)
            cen_s = time.perf_counter() - started
            fed, cen = federated.final_metrics, centralized.final_metrics
            gap = 100 * (cen["map50"] - fed["map50"])
            gaps.append(gap)
            rows.append(
                [
                    seed,
                    fed["map50"],
                    cen["map50"],
                    gap,
                    fed["map50_95"],
                    cen["map50_95"],
                    federated.rollbacks,
                    statistics.median(seconds),
                    fed_s,
                    cen_s,
                ]
            )
            for name, result in (("federated", federated), ("centralized", centralized)):
                curves.rows.append(
                    [
                        seed,
                        name,
                        " → ".join(f"{v:.3f}" for v in _curve(result, "map50")),
                        " → ".join(f"{v:.3f}" for v in _curve(result, "map50_95")),
                    ]
                )
            data["runs"].append(
                {
                    "seed": seed,
                    "federated": {
                        "map50": _curve(federated, "map50"),
                        "map50_95": _curve(federated, "map50_95"),
                        "status": federated.status,
                        "rollbacks": federated.rollbacks,
                        "seconds": fed_s,
                    },
                    "centralized": {
                        "map50": _curve(centralized, "map50"),
                        "map50_95": _curve(centralized, "map50_95"),
                        "seconds": cen_s,
                    },
                    "learner_train_seconds": seconds,
                }
            )
            print(
                f"seed {seed}: federated mAP50 {fed['map50']:.3f} centralized "
                f"{cen['map50']:.3f} gap {gap:+.1f} points; {fed_s:.0f} s / {cen_s:.0f} s",
                flush=True,
            )

    mean_gap = statistics.mean(gaps)
    spec = load_spec(EXAMPLE)
    write_results(
        "detection"
        + ("-from-scratch" if args.from_scratch else "")
        + ("" if args.device == "cpu" else f"-device-{args.device}"),
        title="Federated YOLO (3 non-IID regions) vs centralized, same total epochs",
        description=(
            "Server-side mAP@0.5 and mAP@0.5:0.95 on 60 held-out images of all regions, "
            "after `examples/driving-yolo.yaml` (YOLOv8n "
            + ("from scratch" if args.from_scratch else "from a pretrained detector")
            + ", 3 learners × "
            f"{args.images} generated images, {args.rounds or spec.rounds} rounds × "
            f"{spec.local.epochs:g} "
            "local epochs, FedAvg, oversampling of minority classes) and after its "
            "`--centralized` baseline (the pooled images, rounds × local epochs)."
        ),
        params={
            "spec": "examples/driving-yolo.yaml",
            "seeds": args.seeds,
            "device": args.device,
            "images_per_learner": args.images,
            "imgsz": spec.task.params.get("imgsz"),
            "start": "random weights"
            if args.from_scratch
            else f"pretrained: {args.pretrain_epochs} epochs on 3 × {args.pretrain_images} "
            f"other generated scenes ({pretrain_s:.0f} s)",
        },
        tables=[
            Table(
                "Final server metrics",
                [
                    "seed",
                    "fed mAP@0.5",
                    "central mAP@0.5",
                    "gap (points)",
                    "fed mAP@0.5:0.95",
                    "central mAP@0.5:0.95",
                    "fed rollbacks",
                    "learner s/round (median)",
                    "fed s",
                    "central s",
                ],
                rows,
            ),
            curves,
        ],
        checks=[
            Check(
                "mean gap centralized - federated mAP@0.5",
                mean_gap,
                TARGET_POINTS,
                "<=",
                unit="points",
                note=f"per seed: {', '.join(f'{g:+.1f}' for g in gaps)}",
            ),
            Check(
                "learner local training per round (median)",
                statistics.median(per_learner),
                600.0,
                "<=",
                unit="s",
                note=f"{args.device}; range {min(per_learner):.1f}–{max(per_learner):.1f} s",
                required=False,
            ),
        ],
        notes=[
            "mAP is Ultralytics' (DetectionValidator): 101-point interpolated AP, mean over "
            "classes; mAP@0.5:0.95 averages IoU thresholds 0.5, 0.55, …, 0.95.",
            "Each learner holds one region (sunny city, night highway, foggy suburb): "
            "lighting, blur and class mix differ, so the federation is non-IID; the server "
            "set mixes the regions.",
            "Learner time is the learner's own clock for its local training "
            "(`sys.train_seconds`), one process after another on this machine's cores.",
            "GPU: not measured unless `--device 0` is given on a machine with one; the "
            "results of such a run go to results/detection-device-0.md.",
        ],
        data=data,
    )


if __name__ == "__main__":
    main()
