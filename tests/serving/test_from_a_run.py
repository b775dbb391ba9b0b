"""The whole path: `fedpilot run` registers its model, `fedpilot serve` answers with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from clitools import EXAMPLES, fedpilot


def test_the_model_a_run_registered_is_served_from_the_runs_store(
    start_server: Any, digits_registry: Any, tmp_path: Path
) -> None:
    import mlflow

    from fedpilot.tracking import _mlflow_utils as mu

    runs = tmp_path / "runs"
    done = fedpilot(
        "run", str(EXAMPLES / "digits.yaml"),
        "--set", "rounds=2", "--set", "data.num_learners=4", "--set", "sampling.min_learners=2",
        "--set", "local.epochs=1", "--set", "evaluation.federated_every=0",
        "--set", f"output_dir={runs}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # No --tracking-uri: the store of the runs directory, as `fedpilot models` reads it.
    server = start_server("digits@challenger", "--output-dir", str(runs), uri="")
    x = digits_registry.x_test[:50]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post("/predict", json={"inputs": x.tolist()})
        lineage = client.get("/metadata").json()["primary"]["lineage"]
    assert reply.status_code == 200, reply.text
    with mu.use_tracking_uri(f"sqlite:///{runs / 'mlflow.db'}"):
        model = mlflow.pyfunc.load_model("models:/digits@challenger")
    expected = np.asarray(model.predict(x)).argmax(axis=1)
    np.testing.assert_array_equal(reply.json()["predictions"], expected)
    assert reply.json()["version"] == "1"
    assert lineage["fedpilot.run_id"] in {p.name for p in runs.iterdir()}
