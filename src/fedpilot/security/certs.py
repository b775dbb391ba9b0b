"""TLS for the SuperLink: a private certificate authority and a server certificate it signs.

``fedpilot certs init DIR --host HOST`` writes four files into one folder:

- ``ca.crt``: the CA certificate. Learners trust it (``flower-supernode
  --root-certificates``); the server passes it as ``--ssl-ca-certfile``.
- ``ca.key``: the CA's private key. Only needed to sign a new server certificate; keep
  it off the server if you can.
- ``server.pem`` and ``server.key``: the SuperLink's certificate and private key
  (``--ssl-certfile``, ``--ssl-keyfile``). The certificate names every host learners use to
  reach the server, plus ``localhost`` and ``127.0.0.1``.

All keys are EC P-384 (what Flower itself generates), PEM PKCS#8, unencrypted, mode 0600.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedpilot.errors import UserError
from fedpilot.security._files import (
    PRIVATE,
    PUBLIC,
    prepare_directory,
    refuse_existing,
    write_atomic,
)

ALWAYS_HOSTS = ("localhost", "127.0.0.1")
MAX_DAYS = 36500
# Learner and server clocks disagree a little; a certificate valid "from now" would be
# refused by a learner whose clock runs a minute behind.
_CLOCK_SKEW = timedelta(minutes=5)
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*\.?")
_INIT_HINT = "run `fedpilot certs init DIR --host HOST` to create them"


@dataclass(frozen=True)
class CertificatePaths:
    """Where the CA and server credentials live: four files in one folder.

    Attributes:
        ca_cert: The CA certificate (``ca.crt``), given to every learner.
        ca_key: The CA private key (``ca.key``).
        server_cert: The SuperLink certificate (``server.pem``), signed by the CA.
        server_key: The SuperLink private key (``server.key``).
    """

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str]) -> CertificatePaths:
        """The standard file names inside ``directory``.

        Args:
            directory: The folder written by ``fedpilot certs init``.

        Returns:
            The four paths; nothing is read or checked.
        """
        root = Path(directory)
        return cls(
            ca_cert=root / "ca.crt",
            ca_key=root / "ca.key",
            server_cert=root / "server.pem",
            server_key=root / "server.key",
        )

    def files(self) -> tuple[Path, Path, Path, Path]:
        """All four paths, CA first."""
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key)

    def require_server_files(self) -> None:
        """Check that the files the SuperLink needs exist (``ca.key`` is not needed).

        Raises:
            UserError: Naming every missing file and the command that creates them.
        """
        needed = (self.ca_cert, self.server_cert, self.server_key)
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise UserError(f"TLS files missing: {', '.join(missing)}; {_INIT_HINT}")


def init_certificates(
    directory: str | os.PathLike[str],
    hosts: Iterable[str],
    *,
    days: int = 365,
    overwrite: bool = False,
) -> CertificatePaths:
    """Create a CA and a server certificate it signs, for the SuperLink's TLS.

    Args:
        directory: Folder for the four files; created if missing.
        hosts: DNS names and IP addresses learners use to reach the server. Each becomes a
            subject alternative name; ``localhost`` and ``127.0.0.1`` are always added.
        days: How long both certificates are valid, from now.
        overwrite: Replace existing files. Off by default, because a new CA locks out every
            learner that trusts the old one.

    Returns:
        The paths of the written files.

    Raises:
        UserError: A host is not a DNS name or IP address, ``days`` is out of range, a file
            exists and ``overwrite`` is off, or the folder cannot be written.
    """
    names = subject_alternative_names(hosts)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise UserError(f"`days` must be an integer in [1, {MAX_DAYS}], got days={days!r}")
    paths = CertificatePaths.in_dir(directory)
    prepare_directory(Path(directory))
    refuse_existing(paths.files(), overwrite=overwrite)

    now = datetime.now(UTC)
    not_before, not_after = now - _CLOCK_SKEW, now + timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = _ca_certificate(ca_key, not_before, not_after)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = _server_certificate(server_key, names, ca_key, ca_cert, not_before, not_after)

    write_atomic(paths.ca_key, _private_pem(ca_key), mode=PRIVATE)
    write_atomic(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=PUBLIC)
    write_atomic(paths.server_key, _private_pem(server_key), mode=PRIVATE)
    write_atomic(
        paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), mode=PUBLIC
    )
    return paths


def check_certificates(paths: CertificatePaths, *, at: datetime | None = None) -> None:
    """Check that the server files exist, belong together and are valid at ``at``.

    Catches the mistakes that otherwise surface as an opaque TLS handshake failure on
    every learner: a server certificate from another ``certs init``, a key that is not the
    certificate's, an expired certificate.

    Args:
        paths: The files to check.
        at: The time to check validity at; default now.

    Raises:
        UserError: Naming the file at fault and what is wrong with it.
    """
    paths.require_server_files()
    ca_cert = _load_certificate(paths.ca_cert)
    server_cert = _load_certificate(paths.server_cert)
    try:
        server_cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise UserError(
            f"{paths.server_cert} was not signed by {paths.ca_cert}; {_INIT_HINT} "
            "again with --force"
        ) from exc
    try:
        server_key = serialization.load_pem_private_key(paths.server_key.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{paths.server_key} is not an unencrypted PEM private key") from exc
    if _spki(server_key.public_key()) != _spki(server_cert.public_key()):
        raise UserError(f"{paths.server_key} is not the private key of {paths.server_cert}")
    when = at or datetime.now(UTC)
    for path, cert in ((paths.ca_cert, ca_cert), (paths.server_cert, server_cert)):
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            raise UserError(
                f"{path} is valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not at "
                f"{when:%Y-%m-%d %H:%M} UTC; {_INIT_HINT} again with --force"
            )


def subject_alternative_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """The server certificate's names: ``hosts`` plus localhost, without duplicates.

    An IP address (``10.0.0.5``, ``::1``, ``[::1]``) becomes an ``IPAddress`` entry,
    anything else a ``DNSName`` (``*.example.org`` wildcards allowed).

    Raises:
        UserError: Naming the first host that is neither (spaces, a port, non-ASCII).
    """
    if isinstance(hosts, str):
        hosts = [hosts]
    names: list[x509.GeneralName] = []
    for host in [*hosts, *ALWAYS_HOSTS]:
        name = _general_name(host)
        if name not in names:
            names.append(name)
    return names


def _general_name(host: object) -> x509.GeneralName:
    rule = "each host must be a DNS name or an IP address, without spaces or a port"
    if not isinstance(host, str) or not host:
        raise UserError(f"{rule}, got host={host!r}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return x509.IPAddress(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if len(host) > 253 or not _DNS_NAME.fullmatch(host):
        hint = ""
        if ":" in host:
            hint = " (give the host alone: the port is not part of a certificate)"
        elif not host.isascii():
            hint = " (write internationalised names in their xn-- ASCII form)"
        raise UserError(f"{rule}, got host={host!r}{hint}")
    return x509.DNSName(host)


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    name = _name("fedpilot CA")
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA384())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name("fedpilot server"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca_key, hashes.SHA384())
    )


def _name(common_name: str) -> x509.Name:
    # The common name is a label for people; TLS clients match the SAN entries only.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedpilot"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    # A CA signs certificates and CRLs; the server signs TLS handshakes (ECDHE-ECDSA).
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise UserError(f"{path} is not a PEM certificate; {_INIT_HINT}") from exc
