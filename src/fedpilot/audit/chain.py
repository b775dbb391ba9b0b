"""The audit log on disk: append-only JSON lines, each naming the hash of the line before.

A line is one JSON object: ``seq`` (its position, from 1), ``time``, ``kind``, the
entry's own fields, then ``prev``, the SHA-256 (hex) of the previous line's bytes (64
zeros for the first). The first line (``log_started``) records the run and the public key
that signs the log; a ``signature`` line signs the hash of the line before it, and so the
whole chain up to it. Writers take an exclusive ``flock`` on the file for each batch, so
the run's own writer and another process (the model registry's CLI) interleave whole
lines and never fork the chain.

A writer killed mid-line leaves a torn last line (no newline). The next writer, holding
the lock, knows no one else is writing: it cuts the torn bytes off and records that it
did, with their length and digest (``torn_tail_discarded``), so the chain goes on from the
last whole line and the loss stays visible.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedpilot.audit.keys import (
    key_id,
    load_or_make_signing_key,
    public_hex,
    signing_key_path,
    write_public_key,
)
from fedpilot.errors import UserError
from fedpilot.rundir import RunDir

GENESIS = "0" * 64
"""``prev`` of the first line."""
SIGNED_PREFIX = b"fedpilot audit head v1\n"
"""What a signature signs: this, then the hex hash of the line it follows (domain
separation: a key that signs audit heads signs nothing else by accident)."""

LOG_STARTED = "log_started"
SIGNATURE = "signature"
TORN_TAIL = "torn_tail_discarded"
RESERVED_KINDS = frozenset({LOG_STARTED, SIGNATURE, TORN_TAIL})
"""Kinds only the chain itself writes."""


def line_hash(line: bytes) -> str:
    """The hash the next line records as ``prev``: SHA-256 of the line's bytes (hex),
    without its newline."""
    return hashlib.sha256(line).hexdigest()


def signed_message(head: str) -> bytes:
    """The bytes a ``signature`` line signs for a chain whose last line hashes to ``head``."""
    return SIGNED_PREFIX + head.encode()


def now() -> str:
    """The time a line records: ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str


class AuditLog:
    """The audit log of one run directory, written through its signing key.

    Args:
        run_dir: The run directory.
        key: The signing key; default the one :func:`signing_key_path` names (made there
            on first use).

    Raises:
        UserError: The key file is unusable.
    """

    def __init__(self, run_dir: Path, key: Ed25519PrivateKey | None = None) -> None:
        self.run_dir = RunDir(run_dir)
        self.key = key if key is not None else load_or_make_signing_key(signing_key_path())
        self.public = public_hex(self.key.public_key())

    @property
    def path(self) -> Path:
        return self.run_dir.audit

    def write(self, entries: Iterable[Mapping[str, Any]], *, sign: bool) -> None:
        """Append ``entries`` (each a ``kind`` and its fields) as one batch, chained to
        whatever the file ends with, then a signature of the new head if ``sign``; fsync'd
        when signed.

        Raises:
            OSError: The file cannot be written.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            head, repair = _read_head(fd)
            lines: list[bytes] = []
            if repair is not None:
                os.ftruncate(fd, repair.keep)
            if head is None:
                write_public_key(self.run_dir.audit_public_key, self.key.public_key())
                head = self._chain(lines, None, self._genesis())
            if repair is not None:
                head = self._chain(lines, head, repair.entry())
            for entry in entries:
                head = self._chain(lines, head, entry)
            if sign:
                head = self._chain(lines, head, self._signature(head))
            if lines:
                os.write(fd, b"".join(lines))
                if sign:
                    os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def _genesis(self) -> dict[str, Any]:
        return {
            "kind": LOG_STARTED,
            "run_id": RunDir(self.run_dir.path.resolve()).run_id,  # also when given as "."
            "public_key": self.public,
            "key_id": key_id(self.public),
        }

    def _signature(self, head: _Head) -> dict[str, Any]:
        signature = self.key.sign(signed_message(head.hash))
        return {"kind": SIGNATURE, "key_id": key_id(self.public), "signature": signature.hex()}

    @staticmethod
    def _chain(lines: list[bytes], head: _Head | None, entry: Mapping[str, Any]) -> _Head:
        seq = 1 if head is None else head.seq + 1
        record = {
            "seq": seq,
            "time": now(),
            **entry,
            "prev": GENESIS if head is None else head.hash,
        }
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
        lines.append(line + b"\n")
        return _Head(seq, line_hash(line))


@dataclass(frozen=True)
class _Repair:
    """A torn last line to cut off: the file is kept up to ``keep`` bytes."""

    keep: int
    torn: bytes

    def entry(self) -> dict[str, Any]:
        return {
            "kind": TORN_TAIL,
            "bytes": len(self.torn),
            "sha256": hashlib.sha256(self.torn).hexdigest(),
            "note": "a writer was killed mid-line; its partial line was cut off here",
        }


_CHUNK = 1 << 16


def _read_head(fd: int) -> tuple[_Head | None, _Repair | None]:
    """The last whole line's position and hash, and the torn tail to cut, if any."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, None
    end = size
    tail = b""
    while True:
        start = max(0, end - _CHUNK)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        # The last whole line ends at the last newline; it starts after the one before.
        last_nl = tail.rfind(b"\n")
        if last_nl >= 0 and (tail.rfind(b"\n", 0, last_nl) >= 0 or start == 0):
            break
        if start == 0:
            break
    offset = size - len(tail)
    last_nl = tail.rfind(b"\n")
    repair = None
    if last_nl < len(tail) - 1:
        keep = offset + last_nl + 1
        repair = _Repair(keep=keep, torn=tail[last_nl + 1 :])
    if last_nl < 0:
        return None, repair  # nothing whole: the first line itself was torn
    line = tail[tail.rfind(b"\n", 0, last_nl) + 1 : last_nl]
    try:
        seq = orjson.loads(line).get("seq")
    except (orjson.JSONDecodeError, AttributeError):
        seq = None
    if not isinstance(seq, int):
        # Damaged: go on numbering from the lines' count; verify names the damage.
        seq = _count_lines(fd, offset + last_nl + 1)
    return _Head(seq, line_hash(line)), repair


def _count_lines(fd: int, end: int) -> int:
    count, position = 0, 0
    while position < end:
        chunk = os.pread(fd, min(_CHUNK, end - position), position)
        count += chunk.count(b"\n")
        position += len(chunk)
    return count


def append(run_dir: str | os.PathLike[str], kind: str, fields: Mapping[str, Any]) -> None:
    """Record one action (a model registration, promotion, gate decision, rollback) in
    ``run_dir``'s audit log, and sign the new head at once.

    For callers outside a run (the model registry's CLI). It takes the log's lock, so it
    is safe while the run is writing; a run directory without a log starts one.

    Args:
        run_dir: The run directory the action belongs to.
        kind: What happened, a short snake_case name (``model_registered``,
            ``model_promoted``, ``gate_decision``, ``model_rolled_back``).
        fields: What to record with it (JSON-able: strings, numbers, lists, mappings).

    Raises:
        UserError: ``run_dir`` is not a directory, ``kind`` is not a plain name or is one
            the log reserves, a field is not JSON-able, or the log cannot be written.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"audit: run directory {str(path)!r} does not exist")
    if not kind.replace("_", "").isalnum() or not kind.islower() or kind in RESERVED_KINDS:
        raise UserError(
            f"audit: kind must be a lower-case snake_case name other than "
            f"{', '.join(sorted(RESERVED_KINDS))}; got kind={kind!r}"
        )
    clash = {"seq", "time", "kind", "prev"} & set(fields)
    if clash:
        raise UserError(f"audit: fields may not be named {', '.join(sorted(clash))}")
    try:
        orjson.dumps(dict(fields))
    except TypeError as exc:
        raise UserError(f"audit: fields of {kind} are not JSON-able: {exc}") from exc
    try:
        AuditLog(path).write([{"kind": kind, **fields}], sign=True)
    except OSError as exc:
        raise UserError(f"audit: cannot write {RunDir(path).audit}: {exc.strerror}") from exc


__all__ = ["GENESIS", "AuditLog", "append", "line_hash", "signed_message"]
