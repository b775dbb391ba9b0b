"""Learner authentication: key pairs for learners and the allow-list the server trusts.

This is Flower's SuperNode authentication. Each learner holds an EC private key in
OpenSSH format (``flower-supernode --auth-supernode-private-key``; Flower 1.41 refuses
PKCS#8 PEM). The server keeps an allow-list of the matching public keys and registers
each one with the SuperLink before learners connect; a learner whose key is not
registered is turned away.

The allow-list is a YAML file::

    learners:
      - name: hospital-a
        public_key: ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQ...

Fingerprints are the ``SHA256:...`` form that ``ssh-keygen -lf`` prints, and the same
whether a key is written as an OpenSSH line or as the PEM block the SuperLink logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from fedpilot.errors import UserError
from fedpilot.security._files import (
    PRIVATE,
    PUBLIC,
    prepare_directory,
    refuse_existing,
    write_atomic,
)

NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The SuperLink logs a refused key as the repr of its PEM bytes (b'-----BEGIN ...\n...'),
# so the body may hold literal "\n" escapes as well as real line breaks.
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.DOTALL)
_PEM_NOISE = re.compile(r"\\n|\s")
_NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_ENTRY_FIELDS = ("name", "public_key")
_HEADER = (
    "# Learners allowed to join: the server registers these public keys with the SuperLink.\n"
    "# Add one with `fedpilot learners keygen DIR --name NAME --allow-list THIS_FILE`.\n"
)


@dataclass(frozen=True)
class LearnerKeyPaths:
    """A learner's key pair on disk.

    Attributes:
        private_key: ``<name>.key``, OpenSSH private key format, mode 0600. Stays with the
            learner.
        public_key: ``<name>.pub``, one OpenSSH public key line. Goes on the allow-list.
    """

    private_key: Path
    public_key: Path


@dataclass(frozen=True)
class AuthorizedLearner:
    """One allow-list entry.

    Attributes:
        name: A label for people (logs, the dashboard); see :data:`NAME_RULE`.
        public_key: The learner's OpenSSH public key line (``ecdsa-sha2-nistp384 AAAA...``).
    """

    name: str
    public_key: str

    @property
    def fingerprint(self) -> str:
        """The key's ``SHA256:...`` fingerprint."""
        return public_key_fingerprint(self.public_key)


def check_learner_name(name: object) -> str:
    """Return ``name`` if it is a valid learner name.

    Raises:
        UserError: Stating :data:`NAME_RULE` and the value.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"a learner name must be {NAME_RULE}, got name={name!r}")
    return name


def generate_learner_keys(
    directory: str | os.PathLike[str], name: str, *, overwrite: bool = False
) -> LearnerKeyPaths:
    """Write a new EC P-384 key pair for a learner: ``<name>.key`` and ``<name>.pub``.

    Args:
        directory: Folder for the two files; created if missing.
        name: The learner's name, also the file stem; see :data:`NAME_RULE`.
        overwrite: Replace an existing pair (the old key stops working once the allow-list
            holds the new one).

    Returns:
        The paths of the written files.

    Raises:
        UserError: The name is invalid, a file exists and ``overwrite`` is off, or the
            folder cannot be written.
    """
    check_learner_name(name)
    root = Path(directory)
    paths = LearnerKeyPaths(private_key=root / f"{name}.key", public_key=root / f"{name}.pub")
    prepare_directory(root)
    refuse_existing((paths.private_key, paths.public_key), overwrite=overwrite)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    write_atomic(paths.private_key, private, mode=PRIVATE)
    # The trailing comment is the OpenSSH convention; every reader ignores it.
    line = f"{_openssh_line(key.public_key())} {name}\n"
    write_atomic(paths.public_key, line.encode("ascii"), mode=PUBLIC)
    return paths


def read_public_key_file(path: str | os.PathLike[str], name: str) -> AuthorizedLearner:
    """Read a ``.pub`` file (or a PEM public key) into an allow-list entry called ``name``.

    Raises:
        UserError: The file is missing, or holds no NIST EC public key.
    """
    check_learner_name(name)
    file = Path(path)
    try:
        text = file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the public key file {file}: {exc}") from exc
    try:
        return AuthorizedLearner(name=name, public_key=_openssh_line(_nist_ec_key(text)))
    except ValueError as exc:
        raise UserError(f"{file}: {exc}") from exc


def load_allow_list(path: str | os.PathLike[str]) -> list[AuthorizedLearner]:
    """Read and check an allow-list file.

    An empty file is an empty allow-list. Keys come back as canonical OpenSSH lines
    (type and key, no comment).

    Raises:
        UserError: Naming the file, and the entry index and field at fault: the file is
            missing or not YAML, the document is not a ``learners:`` mapping, an entry is
            not a ``{name, public_key}`` mapping, a name is invalid or repeated, a key does
            not parse, is not a NIST EC key, or is repeated.
    """
    file = Path(path)
    if not file.is_file():
        raise UserError(
            f"the allow-list {file} does not exist; create it with "
            f"`fedpilot learners keygen DIR --name NAME --allow-list {file}`"
        )
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{file} is not valid YAML: {' '.join(str(exc).split())}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the allow-list {file}: {exc}") from exc
    return _parse_allow_list(data, file)


def add_to_allow_list(
    path: str | os.PathLike[str], learner: AuthorizedLearner, *, replace: bool = False
) -> list[AuthorizedLearner]:
    """Append ``learner`` to the allow-list at ``path``, creating the file if missing.

    The file is rewritten atomically (a reader sees the old list or the new one), keeping
    its permissions; comments in it are not kept.

    Args:
        path: The allow-list file.
        learner: The entry to add.
        replace: Replace an entry of the same name (a learner given a new key) instead of
            refusing it.

    Returns:
        The allow-list as now written.

    Raises:
        UserError: ``learner`` is invalid, its name (unless ``replace``) or its key is
            already listed, or the existing file is invalid (see :func:`load_allow_list`).
    """
    file = Path(path)
    new = _check_entry({"name": learner.name, "public_key": learner.public_key}, "learner")
    learners = load_allow_list(file) if file.exists() else []
    if replace:
        learners = [x for x in learners if x.name != new.name]
    fingerprint = new.fingerprint
    for other in learners:
        if other.name == new.name:
            raise UserError(
                f"{file} already allows a learner named {new.name!r}; choose another name, "
                "or pass --force (replace=True) to give it this new key"
            )
        if other.fingerprint == fingerprint:
            raise UserError(
                f"{file} already allows this key ({fingerprint}) as {other.name!r}; "
                "each learner needs its own key"
            )
    learners.append(new)
    prepare_directory(file.parent)
    mode = stat.S_IMODE(file.stat().st_mode) if file.exists() else PUBLIC
    entries = [{"name": x.name, "public_key": x.public_key} for x in learners]
    text = _HEADER + yaml.safe_dump({"learners": entries}, sort_keys=False, width=4096)
    write_atomic(file, text.encode("utf-8"), mode=mode)
    return learners


def public_key_fingerprint(key: str | bytes) -> str:
    """The ``SHA256:<base64>`` fingerprint of a public key, as ``ssh-keygen -lf`` prints it.

    Args:
        key: An OpenSSH public key line (a trailing comment is fine), or a PEM
            ``-----BEGIN PUBLIC KEY-----`` block, also as the SuperLink logs it (the repr
            of its bytes, with ``\\n`` escapes).

    Returns:
        SHA-256 over the key's OpenSSH wire-format blob, base64 without padding, so both
        encodings of one key give the same fingerprint.

    Raises:
        UserError: ``key`` is neither encoding, or a key type OpenSSH cannot express.
    """
    try:
        blob = base64.b64decode(_openssh_line(_public_key(key)).split()[1])
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UserError(f"cannot read the public key {_preview(key)}: {exc}") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return f"SHA256:{digest.rstrip('=')}"


def openssh_public_key(key: str | bytes) -> str:
    """The canonical OpenSSH line (``<type> <base64>``) of an OpenSSH or PEM public key.

    Raises:
        UserError: ``key`` is neither encoding, or a key type OpenSSH cannot express.
    """
    try:
        return _openssh_line(_public_key(key))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UserError(f"cannot read the public key {_preview(key)}: {exc}") from exc


def public_key_for_flower(authorized: AuthorizedLearner) -> bytes:
    """The bytes Flower's Control API takes as ``RegisterNodeRequest.public_key``.

    Flower serialises node keys with ``flwr.supercore.primitives.asymmetric.
    public_key_to_bytes``: PEM SubjectPublicKeyInfo. This returns exactly that, and it is
    also what a SuperNode presents when it connects.

    Raises:
        UserError: The entry's key does not parse or is not a NIST EC key.
    """
    try:
        key = _nist_ec_key(authorized.public_key)
    except ValueError as exc:
        raise UserError(f"learner {authorized.name!r}: {exc}") from exc
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _parse_allow_list(data: object, file: Path) -> list[AuthorizedLearner]:
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"learners"}:
        got = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise UserError(
            f"{file} must be a mapping with one key, `learners:` (a list of "
            f"{{name, public_key}} mappings), got {got}"
        )
    entries = data.get("learners")
    if entries is None:  # `learners:` with nothing after it
        entries = []
    if not isinstance(entries, list):
        raise UserError(f"{file}: `learners` must be a list, got {type(entries).__name__}")
    learners: list[AuthorizedLearner] = []
    seen_names: dict[str, int] = {}
    seen_keys: dict[str, int] = {}
    for index, entry in enumerate(entries):
        where = f"{file}: learners[{index}]"
        learner = _check_entry(entry, where)
        if learner.name in seen_names:
            raise UserError(
                f"{where}.name {learner.name!r} repeats learners[{seen_names[learner.name]}]; "
                "names must be unique"
            )
        fingerprint = learner.fingerprint
        if fingerprint in seen_keys:
            raise UserError(
                f"{where}.public_key ({learner.name!r}) is the same key as "
                f"learners[{seen_keys[fingerprint]}]; each learner needs its own key"
            )
        seen_names[learner.name] = index
        seen_keys[fingerprint] = index
        learners.append(learner)
    return learners


def _check_entry(entry: object, where: str) -> AuthorizedLearner:
    if not isinstance(entry, dict):
        raise UserError(
            f"{where} must be a mapping with `name` and `public_key`, got {_preview(entry)}"
        )
    unknown = sorted(map(str, set(entry) - set(_ENTRY_FIELDS)))
    missing = [f for f in _ENTRY_FIELDS if f not in entry]
    if unknown or missing:
        raise UserError(
            f"{where} must have exactly the fields `name` and `public_key`"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    name: Any = entry["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"{where}.name must be {NAME_RULE}, got name={name!r}")
    raw: Any = entry["public_key"]
    if not isinstance(raw, str):
        raise UserError(
            f"{where}.public_key must be an OpenSSH public key line, got {_preview(raw)}"
        )
    try:
        key = _nist_ec_key(raw)
    except ValueError as exc:
        raise UserError(f"{where}.public_key ({name!r}): {exc}") from exc
    return AuthorizedLearner(name=name, public_key=_openssh_line(key))


def _public_key(key: str | bytes) -> PublicKeyTypes:
    text = key.decode("ascii", errors="replace") if isinstance(key, bytes) else key
    pem = _PEM.search(text)
    if pem is not None:
        try:
            der = base64.b64decode(_PEM_NOISE.sub("", pem.group(1)), validate=True)
        except binascii.Error as exc:
            raise ValueError("the PEM block is not valid base64") from exc
        return serialization.load_der_public_key(der)
    parts = text.split()
    if len(parts) < 2:
        raise ValueError("expected an OpenSSH public key line or a PEM public key")
    return serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode("ascii"))


def _nist_ec_key(key: str | bytes) -> ec.EllipticCurvePublicKey:
    try:
        parsed = _public_key(key)
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported key type: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"not a valid public key: {exc}") from exc
    if not isinstance(parsed, ec.EllipticCurvePublicKey) or not isinstance(
        parsed.curve, _NIST_CURVES
    ):
        kind = getattr(getattr(parsed, "curve", None), "name", None) or type(parsed).__name__
        raise ValueError(
            f"Flower accepts EC keys on a NIST curve (P-256, P-384, P-521) only, got {kind}"
        )
    return parsed


def _openssh_line(key: PublicKeyTypes) -> str:
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")


def _preview(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
