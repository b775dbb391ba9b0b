"""Canary routing and live alias moves, against a real `fedpilot serve` and a real
MLflow registry whose aliases the MLflow client moves."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from typing import Any

import httpx

ROW = [[0.25] * 64]


def test_canary_share_is_kept_and_sticky_per_caller_key(start_server) -> None:
    server = start_server("digits@champion", "--canary", "challenger=10")
    answered: Counter[str] = Counter()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(2000):
            reply = client.post(
                "/predict", json={"inputs": ROW}, headers={"X-Fedpilot-Key": f"caller-{i}"}
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert (body["version"], body["alias"]) in {("1", "champion"), ("2", "challenger")}
            answered[body["version"]] += 1
        share = 100 * answered["2"] / 2000
        assert 7 <= share <= 13, answered
        # One caller stays on its side, whichever it is.
        for key in ("caller-0", "caller-1", "someone"):
            sides = Counter(
                client.post(
                    "/predict", json={"inputs": ROW}, headers={"X-Fedpilot-Key": key}
                ).json()["version"]
                for _ in range(30)
            )
            assert len(sides) == 1, (key, sides)
            answered += sides
        # Without a key, exactly the share, spread by a counter.
        keyless = Counter(
            client.post("/predict", json={"inputs": ROW}).json()["version"] for _ in range(200)
        )
        assert keyless == {"1": 180, "2": 20}
        answered += keyless
        meta = client.get("/metadata").json()
        metrics = client.get("/metrics").text
    assert meta["canary"]["version"] == "2" and meta["canary"]["share_percent"] == 10
    for role, version in (("primary", "1"), ("canary", "2")):
        assert (
            f'fedpilot_serving_requests_total{{model="digits",outcome="ok",role="{role}",'
            f'version="{version}"}} {answered[version]}.0'
        ) in metrics
    assert "fedpilot_serving_canary_share 10.0" in metrics


def test_a_rollback_takes_effect_live_with_no_failed_request(
    start_server, digits_registry: Any
) -> None:
    digits_registry.register("digits-live", champion=2)
    server = start_server("digits-live@champion", "--poll-interval", "0.2")
    client_registry = digits_registry.client()
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.post("/predict", json={"inputs": ROW})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if reply.status_code != 200:
                    failures.append(reply.text)
                else:
                    seen.append(reply.json()["version"])

    def wait_for(version: str) -> None:
        deadline = time.monotonic() + 60
        while not (seen and seen[-1] == version):
            assert time.monotonic() < deadline, f"version {version} never served: {seen[-5:]}"
            time.sleep(0.05)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        wait_for("2")
        # The promotion of version 2 turned out badly: move the alias back (a rollback).
        client_registry.set_registered_model_alias("digits-live", "champion", "1")
        wait_for("1")
        client_registry.set_registered_model_alias("digits-live", "champion", "2")
        wait_for("2")
        client_registry.set_registered_model_alias("digits-live", "champion", "1")
        wait_for("1")
        time.sleep(0.5)
    finally:
        stop.set()
        asker.join(timeout=60)
    assert failures == []
    # Each switch happened once and for good: no request went back to an older version.
    changes = [b for a, b in itertools.pairwise(seen) if a != b]
    assert changes == ["1", "2", "1"]
    assert len(seen) > 20
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/metadata").json()["primary"]["version"] == "1"
        assert "fedpilot_serving_model_swaps_total 3.0" in client.get("/metrics").text
    assert "now serving digits-live version 1 (champion)" in server.stderr()


def test_the_canary_stops_when_its_alias_is_deleted_and_resumes_when_it_is_back(
    start_server, digits_registry: Any
) -> None:
    digits_registry.register("digits-canary", champion=1, challenger=2)
    server = start_server("digits-canary", "--canary", "challenger=50", "--poll-interval", "0.2")
    registry = digits_registry.client()
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def versions(n: int) -> Counter[str]:
            return Counter(
                client.post("/predict", json={"inputs": ROW}).json()["version"] for _ in range(n)
            )

        def canary_becomes(version: str | None) -> None:
            deadline = time.monotonic() + 60
            while (client.get("/metadata").json()["canary"] or {}).get("version") != version:
                assert time.monotonic() < deadline, f"canary never became {version}"
                time.sleep(0.05)

        assert versions(10) == {"1": 5, "2": 5}
        registry.delete_registered_model_alias("digits-canary", "challenger")
        canary_becomes(None)
        assert versions(10) == {"1": 10}
        registry.set_registered_model_alias("digits-canary", "challenger", "2")
        canary_becomes("2")
        assert versions(10) == {"1": 5, "2": 5}
