"""The Ed25519 key that signs audit logs: where it lives, how it is made, how it is named.

The private key is kept *outside* the runs: ``FEDPILOT_AUDIT_KEY`` names its file, by
default ``$XDG_CONFIG_HOME/fedpilot/audit-key.pem`` (``~/.config/fedpilot/...``), the
user's like an SSH key. It is made on first use (PKCS#8 PEM, mode 0600). A run directory
holds only the public half (``audit.pub``, and the log's first line), so whoever can read
or copy the runs folder (a shared volume, a backup, another container) cannot re-sign a
log. A deployment whose home folder does not persist sets ``FEDPILOT_AUDIT_KEY`` to a file
on a volume that does: a resumed run must sign with the key its log began with.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedpilot.errors import UserError
from fedpilot.security._files import PRIVATE, PUBLIC, write_atomic

KEY_ENV = "FEDPILOT_AUDIT_KEY"
"""The environment variable naming the signing key's file (made there if missing)."""


def signing_key_path() -> Path:
    """The private key file that signs audit logs here (it need not exist yet)."""
    configured = os.environ.get(KEY_ENV)
    if configured:
        return Path(configured).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "fedpilot" / "audit-key.pem"


def load_or_make_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; a new one written there (0600) when there is none.

    Raises:
        UserError: The file exists but is not an unencrypted Ed25519 PEM key, others
            than its owner may read or write it, or it cannot be read or written.
    """
    try:
        with path.open("rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            data = handle.read()
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Exclusive: two runs starting at once must not each write their own key.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
        except FileExistsError:
            return load_or_make_signing_key(path)
        except OSError as exc:
            raise UserError(f"cannot create the audit key {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        return key
    except OSError as exc:
        raise UserError(f"cannot read the audit key {path} ({KEY_ENV}): {exc.strerror}") from exc
    if mode & 0o077:
        # Whoever can read the key can re-sign any log it signed (ssh refuses such keys).
        raise UserError(
            f"the audit key {path} ({KEY_ENV}) is open to others than its owner (mode {mode:04o}): "
            f"anyone who can read it can re-sign audit logs; run `chmod 600 {path}` (and "
            "make a new key if others may have read it)"
        )
    if not data:
        # Another process made the file and is writing it: read it once it is whole.
        return _wait_for_key(path)
    return _parse_private(data, path)


def _wait_for_key(path: Path) -> Ed25519PrivateKey:
    import time

    for _ in range(50):
        time.sleep(0.02)
        data = path.read_bytes()
        if data:
            return _parse_private(data, path)
    raise UserError(f"the audit key {path} is empty: remove it and a new one is made")


def _parse_private(data: bytes, path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UserError(
            f"the audit key {path} ({KEY_ENV}) is not an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"the audit key {path} ({KEY_ENV}) must be Ed25519, got {type(key)}")
    return key


def public_hex(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, hex (as the log's first line records it)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def key_id(public: str) -> str:
    """A short name for a public key (hex): ``SHA256:`` and the first 16 hex digits of the
    SHA-256 of its raw bytes."""
    return "SHA256:" + hashlib.sha256(bytes.fromhex(public)).hexdigest()[:16]


def public_from_hex(public: str) -> Ed25519PublicKey:
    """The public key a log line records (raw bytes, hex)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))


def read_public_key(path: Path) -> str:
    """The public key in a PEM file (``audit.pub``) or a private key file, as raw hex.

    Raises:
        UserError: The file cannot be read or holds no Ed25519 key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the key {path}: {exc.strerror}") from exc
    if b"PRIVATE KEY" in data:
        return public_hex(_parse_private(data, path).public_key())
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UserError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path} must hold an Ed25519 key, got {type(key)}")
    return public_hex(key)


def write_public_key(path: Path, key: Ed25519PublicKey) -> None:
    """``audit.pub``: the public key as PEM, for anyone who verifies the log."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(path, pem, mode=PUBLIC)


__all__ = [
    "KEY_ENV",
    "key_id",
    "load_or_make_signing_key",
    "public_from_hex",
    "public_hex",
    "read_public_key",
    "signing_key_path",
    "write_public_key",
]
