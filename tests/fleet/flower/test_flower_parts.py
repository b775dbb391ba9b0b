"""The Flower fleet's pure parts: refusal parsing, run config, addresses, node config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from fedpilot.deployment.bundle import FederationConfig, build_fab
from fedpilot.deployment.server import EventFollower, FederationServer, flower_runtime
from fedpilot.deployment.superlink import local_address
from fedpilot.deployment.supernode import NodeData
from fedpilot.errors import SpecError
from fedpilot.fleet.flower.fleet import learner_id
from fedpilot.fleet.flower.refusals import RefusalLog, parse_refusal
from fedpilot.security.keys import generate_learner_keys, public_key_fingerprint
from fedpilot.spec import FederationSpec, validate_spec

PEM = (
    "b'-----BEGIN PUBLIC KEY-----\\n"
    "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE+kGhb1uYJH6VXUKy7p0ba8opd19nM/1g\\n"
    "zUXewTnbamw1ikh7Ie9M6eNdh5t2/lO+vq2QNmCdPaqXcc3QOIZ3zxWh273QK6Xc\\n"
    "kbicOjWftX23uKc2xrgmFSkVizDCDXsn\\n-----END PUBLIC KEY-----\\n'"
)
UNKNOWN = "No SuperNode found with the given public key."


def _refused_line(key: str, reason: str) -> str:
    return (
        "ERROR flwr 2026-11-23 21:34:22,542 | http.py:76 | [/v1/fleet/activate-node]"
        f"[ApiError:2004] Attempted to register SuperNode with public key: {key}, "
        f"exception: {reason}"
    )


def test_an_unknown_key_is_a_refusal_named_by_its_fingerprint(tmp_path: Path) -> None:
    pair = generate_learner_keys(tmp_path, "rogue")
    from cryptography.hazmat.primitives import serialization

    public = serialization.load_ssh_public_key(pair.public_key.read_bytes())
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    notice = parse_refusal(
        _refused_line(repr(pem), "No SuperNode found with the given public key.")
    )
    assert notice is not None and notice.kind == "refused"
    assert notice.learner == public_key_fingerprint(pair.public_key.read_text())
    assert "No SuperNode found" in notice.detail


def test_a_known_learner_reconnecting_early_is_not_a_refusal() -> None:
    line = _refused_line(PEM, "SuperNode with node ID 42 could not be activated.")
    assert parse_refusal(line) is None
    assert parse_refusal("INFO some other line") is None


def test_refusal_log_reads_from_the_offset_and_only_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "superlink.log"
    old = _refused_line(PEM, UNKNOWN) + "\n"
    log.write_text(old)
    follower = RefusalLog(log, offset=len(old))
    assert follower() == []
    new = _refused_line(PEM, UNKNOWN)
    with log.open("a") as out:
        out.write(new[:50])
    assert follower() == []  # a torn line waits for its end
    with log.open("a") as out:
        out.write(new[50:] + "\n")
    assert [n.kind for n in follower()] == ["refused"]
    assert follower() == []


def test_federation_config_travels_in_the_run_config() -> None:
    config = FederationConfig(
        "{}", "/runs/x", resume=True, superlink_log="/l", superlink_log_offset=7
    )
    context = Context(
        run_id=1, node_id=2, node_config={}, state=RecordDict(), run_config=config.as_run_config()
    )
    assert FederationConfig.from_context(context) == config
    empty = Context(run_id=1, node_id=2, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(Exception, match="fedpilot server"):
        FederationConfig.from_context(empty)


def test_the_fab_names_fedpilots_own_components(tmp_path: Path) -> None:
    fab, digest = build_fab(tmp_path)
    assert len(digest) == 64 and fab[:2] == b"PK"
    pyproject = (tmp_path / "app" / "pyproject.toml").read_text()
    assert 'serverapp = "fedpilot.fleet.flower.apps:server_app"' in pyproject
    assert 'clientapp = "fedpilot.fleet.flower.apps:client_app"' in pyproject


def test_learner_ids_and_addresses() -> None:
    assert learner_id(5, "hospital-a") == "hospital-a"
    assert learner_id(5, "") == "node-5"
    assert local_address("0.0.0.0:8000") == "127.0.0.1:8000"
    assert local_address("10.0.0.2:8000") == "10.0.0.2:8000"


def test_node_config_quotes_strings_for_flower(tmp_path: Path) -> None:
    assert NodeData(index=1, count=3).node_config("a") == (
        'name="a" partition-id=1 num-partitions=3'
    )
    data = tmp_path / "mine.npz"
    assert NodeData(path=data).node_config(None) == f'data-path="{data.resolve()}"'


def _spec(tmp_path: Path, runtime: dict[str, object]) -> FederationSpec:
    return validate_spec(
        {
            "name": "x",
            "task": {"name": "digits-mlp"},
            "runtime": runtime,
            "output_dir": str(tmp_path),
        }
    )


def test_the_server_needs_flower_mode_and_tls_unless_insecure(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"runtime\.mode=flower"):
        flower_runtime(_spec(tmp_path, {"mode": "local"}))
    with pytest.raises(SpecError, match=r"runtime\.certificates"):
        FederationServer(_spec(tmp_path, {"mode": "flower"}))
    with pytest.raises(Exception, match=r"server\.pem"):
        FederationServer(_spec(tmp_path, {"mode": "flower", "certificates": str(tmp_path)}))
    server = FederationServer(_spec(tmp_path, {"mode": "flower"}), insecure=True)
    assert server.transport.insecure


@pytest.mark.parametrize(
    ("runtime", "field"),
    [
        ({"mode": "flower", "listen": "0.0.0.0"}, "runtime.listen"),
        ({"mode": "flower", "superlink": "host:99999"}, "runtime.superlink"),
        ({"mode": "flower", "workers": 2}, "workers"),
        ({"mode": "ray", "cpus_per_learner": 0}, "cpus_per_learner"),
        ({"mode": "cluster"}, "mode"),
    ],
)
def test_bad_runtime_sections_name_the_field(
    tmp_path: Path, runtime: dict[str, object], field: str
) -> None:
    with pytest.raises(SpecError, match=field):
        _spec(tmp_path, runtime)


def test_event_follower_yields_each_event_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"event": "Old"}) + "\n")
    follower = EventFollower(path)
    assert list(follower.new_events()) == []
    with path.open("a") as out:
        out.write(json.dumps({"event": "RoundCompleted", "round": 1}) + '\n{"event": ')
    assert [e["event"] for e in follower.new_events()] == ["RoundCompleted"]
    with path.open("a") as out:
        out.write('"RunFinished"}\n')
    assert [e["event"] for e in follower.new_events()] == ["RunFinished"]


def test_the_waits_fedpilot_shortens_are_still_flowers() -> None:
    """_tuning replaces module-level names of Flower's; if an upgrade moves them, this
    fails instead of rounds silently going slow again."""
    import inspect

    from flwr.superlink.grid import http_grid
    from flwr.supernode import start_client_internal

    from fedpilot.deployment.tuning import (
        IDLE_WAIT_S,
        REPLY_WAIT_S,
        ShorterWaits,
    )

    source = inspect.getsource(start_client_internal)
    assert f"time.sleep({IDLE_WAIT_S})" in source
    assert f"time.sleep({REPLY_WAIT_S})" in source
    for module in (start_client_internal, http_grid):
        assert "pull_objects(" in inspect.getsource(module)
        assert callable(module.pull_objects)
    waits = ShorterWaits(idle_cap=0.05, reply=0.001)
    started = waits.monotonic()
    waits.sleep(IDLE_WAIT_S)
    waits.sleep(REPLY_WAIT_S)
    assert waits.monotonic() - started < 1.0


def test_polls_are_quick_while_active_then_back_off_to_the_cap() -> None:
    from fedpilot.deployment import tuning as _tuning
    from fedpilot.deployment.tuning import IDLE_WAIT_S, REPLY_WAIT_S, ShorterWaits

    slept: list[float] = []
    waits = ShorterWaits(idle_cap=3.0, reply=0.05, sleep=slept.append)
    for _ in range(4):  # never served anything: idle from the start
        waits.sleep(IDLE_WAIT_S)
    waits.sleep(REPLY_WAIT_S)  # a message is being served
    waits.sleep(IDLE_WAIT_S)
    waits.sleep(IDLE_WAIT_S)
    waits.sleep(1.25)  # any other wait is Flower's own
    assert slept == [0.5, 1.0, 2.0, 3.0, 0.05, 0.5, 0.5, 1.25]
    waits.__dict__["_served_at"] -= _tuning.ACTIVE_WINDOW_S  # long ago
    waits.sleep(IDLE_WAIT_S)
    waits.sleep(IDLE_WAIT_S)
    assert slept[-2:] == [0.5, 1.0]


def test_early_object_pulls_retry_after_milliseconds() -> None:
    import functools

    from fedpilot.deployment.tuning import quicker_object_pulls

    class Module:
        pull_objects = staticmethod(lambda *a, **k: k)

    quicker_object_pulls(Module)  # type: ignore[arg-type]
    assert isinstance(Module.pull_objects, functools.partial)
    assert Module.pull_objects()["initial_backoff"] < 0.1
    quicker_object_pulls(Module)  # type: ignore[arg-type]  # idempotent
    assert not isinstance(Module.pull_objects.func, functools.partial)


def test_an_allowed_key_turned_away_early_is_not_a_refusal(tmp_path: Path) -> None:
    """A listed learner that connects before the server registered the keys (or while
    its old session lives) is turned away and retries; the run records no refusal."""
    from cryptography.hazmat.primitives import serialization

    pair = generate_learner_keys(tmp_path, "alpha")
    pem = serialization.load_ssh_public_key(pair.public_key.read_bytes()).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    log = tmp_path / "superlink.log"
    log.write_text(_refused_line(repr(pem), UNKNOWN) + "\n" + _refused_line(PEM, UNKNOWN) + "\n")
    allowed = frozenset({public_key_fingerprint(pair.public_key.read_text())})
    notices = RefusalLog(log, 0, allowed)()
    assert [n.learner for n in notices] == [public_key_fingerprint(PEM)]
