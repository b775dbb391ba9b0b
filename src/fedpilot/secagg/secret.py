"""The learner side's own secret, from which its per-round keys and mask seeds derive.

A learner's secrets must outlive one exchange (the keys it advertises are the ones it
masks and unmasks with) but must never travel through the server, so they cannot be
learner state (``LearnerState`` is held by the server). Each learner therefore derives
them with HKDF from a machine secret bound to the session, round and learner: on a real
learner machine ``FEDPILOT_SECAGG_SECRET`` (64 hex digits, one per machine) or else a
0600 key file created once in the user's cache folder. Simulated learners on one machine
share that machine's secret but derive distinct keys; there the server runs on the same
machine anyway, so the guarantee is what the server-side code is handed.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedpilot.secagg.crypto import KEY_BYTES, hkdf

ENV = "FEDPILOT_SECAGG_SECRET"
_READ: dict[str, bytes] = {}
"""Key files already read, by their cache folder."""


def machine_secret() -> bytes:
    text = os.environ.get(ENV)
    if text:
        secret = bytes.fromhex(text)
        if len(secret) != KEY_BYTES:
            raise ValueError(f"{ENV} must be {2 * KEY_BYTES} hex digits")
        return secret
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if cache in _READ:  # read once a process: every key of every exchange derives from it
        return _READ[cache]
    path = Path(cache) / "fedpilot" / "secagg.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # written aside, then linked: no reader sees half a key
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(KEY_BYTES))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_bytes()
    if len(secret) != KEY_BYTES:
        raise OSError(f"{path} is not a {KEY_BYTES}-byte key")
    _READ[cache] = secret
    return secret


def round_secret(session: str, round_: int, learner: str, purpose: str) -> bytes:
    """A 32-byte secret of this learner for one purpose in one round of one session."""
    info = f"fedpilot-secagg|{purpose}|{session}|{round_}|{learner}".encode()
    return hkdf(machine_secret(), info)
