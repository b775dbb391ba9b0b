"""`fedpilot serve` in front of a registered digits model: predictions, the other
endpoints, and 4xx for every kind of bad request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest


def test_serving_predicts_the_task_labels_on_the_digits_test_set(
    start_server, digits_registry: Any
) -> None:
    server = start_server("digits@champion")
    x, y = digits_registry.x_test, digits_registry.y_test
    labels = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for start in range(0, len(x), 100):
            reply = client.post("/predict", json={"inputs": x[start : start + 100].tolist()})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["version"] == "1" and body["alias"] == "champion"
            assert reply.headers["X-Fedpilot-Model-Version"] == "1"
            assert np.asarray(body["scores"]).shape == (len(body["predictions"]), 10)
            labels.extend(body["predictions"])
    expected = digits_registry.labels(1, x)
    np.testing.assert_array_equal(labels, expected)
    task = digits_registry.tasks[0]
    accuracy = task.evaluate(task.central_test_data())["accuracy"]
    assert np.mean(np.asarray(labels) == y) == accuracy
    assert accuracy > 0.9


def test_an_sklearn_model_answers_its_own_labels(start_server, digits_registry: Any) -> None:
    server = start_server("digits-sgd")
    x = digits_registry.x_test
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post("/predict", json={"inputs": x[:200].tolist()})
        meta = client.get("/metadata").json()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "scores" not in body and meta["primary"]["outputs_scores"] is False
    estimator = digits_registry.sgd.model_artifact().model
    np.testing.assert_array_equal(body["predictions"], estimator.predict(x[:200]))


def test_health_ready_metadata_metrics_and_docs(start_server) -> None:
    server = start_server("digits/2")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json()["ready"] is True
        meta = client.get("/metadata").json()
        assert meta["name"] == "digits" and meta["follows_aliases"] is False
        primary = meta["primary"]
        assert primary["version"] == "2" and primary["alias"] is None
        assert primary["lineage"]["fedpilot.test"] == "lineage"
        assert primary["run_id"] and primary["input"] == "float32 array of shape (N, 64)"
        signature = json.loads(primary["signature"]["inputs"])
        tensor = {"dtype": "float32", "shape": [-1, 64]}
        assert signature == [{"type": "tensor", "tensor-spec": tensor}]
        assert meta["canary"] is None
        client.post("/predict", json={"inputs": [[0.0] * 64]}).raise_for_status()
        metrics = client.get("/metrics").text
        assert (
            'fedpilot_serving_requests_total{model="digits",outcome="ok",role="primary",'
            'version="2"} 1.0' in metrics
        )
        assert 'fedpilot_serving_request_seconds_count{model="digits",version="2"} 1.0' in metrics
        assert (
            'fedpilot_serving_model_version{alias="",model="digits",role="primary",version="2"} 1.0'
            in metrics
        )
        page = client.get("/docs").text
        assert "swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        schema = client.get("/openapi.json").json()
        body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["properties"]["inputs"]["items"]["maxItems"] == 64


ROW = [0.5] * 64


def _inputs(value: Any) -> bytes:
    return json.dumps({"inputs": value}).encode()


BAD_REQUESTS = [
    # (what, body, status, words the answer must contain)
    ("not JSON", b'{"inputs": [[1, 2', 400, "not valid JSON"),
    ("NaN is not JSON", b'{"inputs": [[NaN' + b", 0" * 63 + b"]]}", 400, "not valid JSON"),
    ("no inputs", json.dumps({"rows": [ROW]}).encode(), 422, '{"inputs"'),
    ("a list at the top", json.dumps([ROW]).encode(), 422, '{"inputs"'),
    ("empty batch", _inputs([]), 422, "non-empty"),
    ("63 columns", _inputs([ROW, ROW[:63]]), 422, "inputs[1] has 63 values, not 64"),
    ("all rows short", _inputs([ROW[:10]]), 422, "inputs[0] has 10 values"),
    ("one flat row", _inputs(ROW), 422, "inputs[0] is not a list"),
    ("too deep", _inputs([[ROW]]), 422, "shape (N, 64)"),
    ("a string", _inputs([[*ROW[:5], "7", *ROW[6:]]]), 422, 'inputs[0][5] is "7"'),
    ("a boolean", _inputs([[True, *ROW[1:]]]), 422, "inputs[0][0] is true"),
    ("a null", _inputs([[None, *ROW[1:]]]), 422, "inputs[0][0] is null"),
    ("too large for float32", _inputs([[1e300, *ROW[1:]]]), 422, "too large for float32"),
    ("too many rows", _inputs([ROW] * 11), 413, "at most 10"),
    ("an oversized body", _inputs([0] * 30_000), 413, "larger than 50000 bytes"),
]


def test_bad_requests_get_a_4xx_that_names_the_problem(start_server) -> None:
    server = start_server("digits", "--max-rows", "10", "--max-body-bytes", "50000")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for what, body, status, words in BAD_REQUESTS:
            reply = client.post(
                "/predict", content=body, headers={"Content-Type": "application/json"}
            )
            assert reply.status_code == status, (what, reply.text)
            assert words in reply.json()["detail"], (what, reply.text)
        # A chunked body declares no length: the limit holds while it is read.
        chunks = (b'{"inputs": [' if i == 0 else b"0," * 1000 for i in range(40))
        reply = client.post("/predict", content=chunks)
        assert reply.status_code == 413, reply.text
        # The server is fine afterwards, and counted the refusals as client errors only.
        assert client.post("/predict", json={"inputs": [ROW]}).status_code == 200
        metrics = client.get("/metrics").text
    refused = len(BAD_REQUESTS) + 1
    assert (
        'fedpilot_serving_requests_total{model="digits",outcome="client_error",'
        f'role="primary",version="1"}} {refused}.0' in metrics
    )
    assert 'outcome="server_error"' not in metrics
    assert 'fedpilot_serving_errors_total{model="digits",status="413",version="1"} 3.0' in metrics
    assert "Traceback" not in server.stderr()


@pytest.mark.slow
def test_the_docs_page_renders_offline_in_chromium(start_server) -> None:
    from playwright.sync_api import sync_playwright

    server = start_server("digits/2")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{server.url}/docs")
        # Swagger UI drew the /predict operation from /openapi.json.
        page.locator(".opblock-summary-path", has_text="/predict").wait_for(timeout=30_000)
        browser.close()
    assert errors == [] and requested
    assert all(url.startswith(server.url) for url in requested), requested  # nothing fetched


def test_a_client_that_hangs_up_mid_body_is_no_server_error(start_server) -> None:
    import socket
    import time
    from urllib.parse import urlsplit

    server = start_server("digits@champion")
    where = urlsplit(server.url)
    for _ in range(3):
        with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"inputs": [[0'
            )
    # Each hang-up is counted as a client's error (400), not logged as the server's.
    counted = 'fedpilot_serving_errors_total{model="digits",status="400",version="1"} 3.0'
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            metrics = client.get("/metrics").text
            if counted in metrics:
                break
            time.sleep(0.1)
    assert counted in metrics, metrics
    assert "Traceback" not in server.stderr() and "Exception" not in server.stderr()
