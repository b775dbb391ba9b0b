"""Checking an audit log: every line whole, in place, chained, and signed by the trusted key.

What catches what:

* an edited line: the next line's ``prev`` no longer matches its hash (the last line, a
  signature, no longer verifies);
* a deleted line or a reordered pair: a line's ``seq`` is not its position;
* a chain rewritten whole (every ``prev`` recomputed): its signatures no longer verify,
  and one re-signed with another key names a key that is not the trusted one;
* a log with no signature at all (they were removed, and the rest rewritten): every
  writer signs its first lines at once;
* another run's log put in this one's place (signed with the same key, as every run on
  a machine is): its first line names that run, not the run directory's.

The trusted key is the one given (``--public-key``), else the local signing key's public
half (the same lookup the writer uses), else, with a note that a rewrite re-signed with a
new key would pass, the key the log's first line names. Lines after the last signature
are chained but unsigned (the run is going on, or was cut mid-round); a torn last line
(no newline: its writer was killed mid-line) is reported as such, not as tampering.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature

from fedpilot.audit.chain import GENESIS, LOG_STARTED, SIGNATURE, line_hash, signed_message
from fedpilot.audit.keys import KEY_ENV, key_id, public_from_hex, read_public_key, signing_key_path
from fedpilot.rundir import RunDir


@dataclass(frozen=True)
class Verification:
    """What :func:`verify_log` found."""

    path: Path
    lines: int
    """Whole lines read (up to the first bad one, if any)."""
    bad_line: int | None = None
    """The first line that fails (1-based); None when the log holds."""
    problem: str | None = None
    """What is wrong with ``bad_line``."""
    signed_through: int = 0
    """The last line a valid signature covers (0: none)."""
    signatures: int = 0
    torn_tail: int = 0
    """Bytes of a torn last line (a writer killed mid-line); 0 when none."""
    key_id: str | None = None
    """The key the signatures were checked against."""
    key_source: str = ""
    """Where that key came from."""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bad_line is None

    @property
    def unsigned(self) -> int:
        """Whole lines after the last signature."""
        return self.lines - self.signed_through if self.ok else 0


def trusted_key(public_key: Path | None) -> tuple[str | None, str]:
    """The public key (hex) signatures must verify against, and where it came from."""
    if public_key is not None:
        return read_public_key(public_key), f"--public-key {public_key}"
    local = signing_key_path()
    if local.is_file():
        origin = f"${KEY_ENV}" if os.environ.get(KEY_ENV) else "the local signing key"
        return read_public_key(local), f"{origin} {local}"
    return None, ""


def verify_log(run_dir: Path, *, public_key: Path | None = None) -> Verification:
    """Check ``run_dir``'s ``audit.jsonl`` from its first line to its last.

    Args:
        run_dir: The run directory.
        public_key: A PEM file with the key the log must be signed with (an auditor's
            copy of ``audit.pub``); default the local signing key's.

    Raises:
        UserError: ``public_key`` cannot be read.
    """
    files = RunDir(run_dir)
    path = files.audit
    trusted, source = trusted_key(public_key)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return Verification(path, 0, 1, "no audit log (audit.jsonl is missing)")
    except OSError as exc:
        return Verification(path, 0, 1, f"cannot read the audit log: {exc.strerror}")
    # The folder's own name, even when it is given as ``.``.
    check = _Checker(trusted, source, RunDir(files.path.resolve()).run_id)
    lines = torn = 0
    with handle:  # line by line: a long run's log need not fit in memory
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                torn = len(raw)  # the last line, cut short
                break
            problem = check.line(number, raw[:-1], handle)
            if problem is not None:
                return check.result(path, number - 1, bad=problem)
            lines = number
    if not lines:
        if torn:
            why = f"the audit log holds no whole line, only a torn one ({torn} bytes)"
        else:
            why = "the audit log is empty"
        return Verification(path, 0, 1, why)
    if not check.signatures:
        # Every writer signs its first lines at once (the run's start, an append).
        unsigned = (
            "no line is signed: every writer signs its first lines at once, so nothing "
            "in this log is shown to come from the key's holder (signatures removed?)"
        )
        return check.result(path, lines - 1, bad=(lines, unsigned), torn=torn)
    return check.result(path, lines, torn=torn)


class _Checker:
    def __init__(self, trusted: str | None, source: str, run_id: str) -> None:
        self.trusted = trusted
        self.run_id = run_id
        self.source = source
        self.notes: list[str] = []
        self.prev = GENESIS
        self.signed_through = 0
        self.signatures = 0

    def line(self, number: int, line: bytes, later: Iterable[bytes]) -> tuple[int, str] | None:
        """The first bad line and why, or None if ``line`` holds."""
        try:
            record: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            return number, "not a JSON object: the line was edited or damaged"
        seq = record.get("seq")
        if seq != number:
            where = f"holds entry seq={seq!r} where entry {number} belongs"
            return number, f"{where}: {_moved(number, later)}"
        if record.get("prev") != self.prev:
            if number == 1:
                return 1, "its prev is not the chain's start: the log's beginning was removed"
            return number - 1, (
                f"its hash no longer matches the one line {number} records (prev): "
                f"line {number - 1} was edited (or line {number}'s prev was)"
            )
        if number == 1:
            problem = self._first(record)
            if problem is not None:
                return 1, problem
        if record.get("kind") == SIGNATURE:
            problem = self._signature(record)
            if problem is not None:
                return number, problem
            self.signed_through = number
            self.signatures += 1
        self.prev = line_hash(line)
        return None

    def _first(self, record: dict[str, Any]) -> str | None:
        if record.get("kind") != LOG_STARTED:
            return f"the first line is a {record.get('kind')!r}, not {LOG_STARTED!r}"
        if record.get("run_id") != self.run_id:
            return (
                f"the log is that of run {record.get('run_id')!r}, not of this run "
                f"({self.run_id!r}): another run's log was put here"
            )
        named = record.get("public_key")
        if not isinstance(named, str):
            return "the first line names no public key"
        if self.trusted is None:
            self.trusted = named
            self.source = "the log's own first line"
            self.notes.append(
                "no trusted key here (give --public-key, or run where the signing key "
                "is): the signatures were checked against the key the log names itself, "
                "so a chain rewritten and re-signed with a new key would pass"
            )
        elif named != self.trusted:
            return (
                f"the log names key {_id(named)}, not the trusted key {_id(self.trusted)} "
                f"({self.source}): the chain was rewritten and re-signed with another key"
            )
        return None

    def _signature(self, record: dict[str, Any]) -> str | None:
        assert self.trusted is not None  # set by the first line
        signature = record.get("signature")
        try:
            public_from_hex(self.trusted).verify(
                bytes.fromhex(str(signature)), signed_message(self.prev)
            )
        except (InvalidSignature, ValueError):
            return (
                f"the signature does not verify with the trusted key {_id(self.trusted)}: "
                "the lines before it are not the ones that were signed"
            )
        return None

    def result(
        self, path: Path, lines: int, *, bad: tuple[int, str] | None = None, torn: int = 0
    ) -> Verification:
        return Verification(
            path=path,
            lines=lines,
            bad_line=bad[0] if bad else None,
            problem=bad[1] if bad else None,
            signed_through=self.signed_through,
            signatures=self.signatures,
            torn_tail=torn,
            key_id=None if self.trusted is None else _id(self.trusted),
            key_source=self.source,
            notes=self.notes,
        )


def _moved(number: int, later: Iterable[bytes]) -> str:
    """Why entry ``number`` is not in its place: further down (reordered) or gone."""
    marker = b'{"seq":%d,' % number
    for offset, line in enumerate(later, start=1):
        if line.startswith(marker):
            return f"lines were reordered (entry {number} is at line {number + offset})"
    return f"entry {number} was deleted"


def _id(public: str) -> str:
    try:
        return key_id(public)
    except ValueError:
        return repr(public[:20])


__all__ = ["Verification", "trusted_key", "verify_log"]
