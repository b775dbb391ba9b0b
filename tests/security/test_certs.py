"""The CA and server certificate: a chain that verifies, a TLS handshake, safe files."""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedpilot.errors import UserError
from fedpilot.security import CertificatePaths, check_certificates, init_certificates

HOSTS = ["fl.example.org", "10.1.2.3", "[::1]"]


@pytest.fixture
def certs(tmp_path: Path) -> CertificatePaths:
    return init_certificates(tmp_path / "tls", HOSTS, days=30)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _spki(key: ec.EllipticCurvePublicKey | object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_standard_file_names(tmp_path: Path) -> None:
    paths = CertificatePaths.in_dir(tmp_path)
    assert [p.name for p in paths.files()] == ["ca.crt", "ca.key", "server.pem", "server.key"]
    assert {p.parent for p in paths.files()} == {tmp_path}


def test_server_certificate_is_signed_by_the_ca(certs: CertificatePaths) -> None:
    ca, server = _cert(certs.ca_cert), _cert(certs.server_cert)
    server.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)  # self-signed
    assert server.issuer == ca.subject
    other = init_certificates(certs.ca_cert.parent.parent / "other", ["x.org"])
    with pytest.raises(Exception):  # noqa: B017 - InvalidSignature or ValueError
        server.verify_directly_issued_by(_cert(other.ca_cert))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_the_chain(certs: CertificatePaths) -> None:
    out = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", certs.ca_cert, certs.server_cert],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")


def test_ca_extensions(certs: CertificatePaths) -> None:
    ca = _cert(certs.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())  # type: ignore[arg-type]
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)


def test_server_names_and_extensions(certs: CertificatePaths) -> None:
    server, ca = _cert(certs.server_cert), _cert(certs.ca_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["fl.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    constraints = server.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = server.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    ski = server.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = server.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert ski == x509.SubjectKeyIdentifier.from_public_key(server.public_key())  # type: ignore[arg-type]
    key = server.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)


def test_localhost_is_always_named_once(tmp_path: Path) -> None:
    paths = init_certificates(tmp_path, ["localhost", "127.0.0.1"])
    san = _cert(paths.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_a_single_string_is_one_host(tmp_path: Path) -> None:
    paths = init_certificates(tmp_path, "fl.example.org")
    san = _cert(paths.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "fl.example.org" in san.value.get_values_for_type(x509.DNSName)


def test_private_keys_match_certificates(certs: CertificatePaths) -> None:
    for key_path, cert_path in (
        (certs.ca_key, certs.ca_cert),
        (certs.server_key, certs.server_cert),
    ):
        pem = key_path.read_bytes()
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert _spki(key.public_key()) == _spki(_cert(cert_path).public_key())


def test_validity_covers_now_and_the_requested_days(certs: CertificatePaths) -> None:
    now = datetime.now(UTC)
    for path in (certs.ca_cert, certs.server_cert):
        cert = _cert(path)
        assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
        assert abs(cert.not_valid_after_utc - (now + timedelta(days=30))) < timedelta(minutes=1)


def test_file_modes_ignore_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        paths = init_certificates(tmp_path, ["a.example"])
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths.files()}
    assert modes == {"ca.crt": 0o644, "ca.key": 0o600, "server.pem": 0o644, "server.key": 0o600}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(modes)  # no temporary files


def test_refuses_to_overwrite_unless_asked(certs: CertificatePaths) -> None:
    before = {p: p.read_bytes() for p in certs.files()}
    with pytest.raises(UserError, match=r"refusing to overwrite .*ca\.crt.*--force"):
        init_certificates(certs.ca_cert.parent, HOSTS)
    assert {p: p.read_bytes() for p in certs.files()} == before
    init_certificates(certs.ca_cert.parent, HOSTS, overwrite=True)
    assert all(p.read_bytes() != before[p] for p in certs.files())


def test_one_existing_file_blocks_all_writes(tmp_path: Path) -> None:
    paths = CertificatePaths.in_dir(tmp_path)
    paths.server_key.write_text("mine")
    with pytest.raises(UserError, match=r"server\.key"):
        init_certificates(tmp_path, ["a.example"])
    assert [p.name for p in tmp_path.iterdir()] == ["server.key"]
    assert paths.server_key.read_text() == "mine"


@pytest.mark.parametrize(
    "host", ["", "a b", "fl.example.org:8000", "bücher.example", "-bad.example", "a..b", 5]
)
def test_bad_hosts_are_named(tmp_path: Path, host: object) -> None:
    with pytest.raises(UserError, match="DNS name or an IP address") as info:
        init_certificates(tmp_path, ["ok.example", host])  # type: ignore[list-item]
    assert repr(host) in str(info.value)
    assert not any(tmp_path.iterdir())


def test_wildcards_and_ipv6_are_hosts(tmp_path: Path) -> None:
    paths = init_certificates(tmp_path, ["*.fl.example.org", "fe80::1"])
    san = _cert(paths.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "*.fl.example.org" in san.value.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("fe80::1") in san.value.get_values_for_type(x509.IPAddress)


@pytest.mark.parametrize("days", [0, -1, 36501, True])
def test_days_out_of_range(tmp_path: Path, days: int) -> None:
    with pytest.raises(UserError, match=f"days={days!r}"):
        init_certificates(tmp_path, ["a.example"], days=days)


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "tls").write_text("")
    with pytest.raises(UserError, match="not a directory"):
        init_certificates(tmp_path / "tls", ["a.example"])


def test_require_server_files_names_the_missing_ones(tmp_path: Path) -> None:
    paths = CertificatePaths.in_dir(tmp_path)
    with pytest.raises(UserError) as info:
        paths.require_server_files()
    message = str(info.value)
    assert all(str(p) in message for p in (paths.ca_cert, paths.server_cert, paths.server_key))
    assert str(paths.ca_key) not in message  # the server does not need the CA key
    assert "fedpilot certs init DIR --host HOST" in message
    init_certificates(tmp_path, ["a.example"])
    paths.ca_key.unlink()
    paths.require_server_files()
    paths.server_key.unlink()
    with pytest.raises(UserError, match=r"server\.key") as info:
        paths.require_server_files()
    assert "server.pem" not in str(info.value)


def test_check_certificates_accepts_a_fresh_pair(certs: CertificatePaths) -> None:
    check_certificates(certs)


def test_check_certificates_catches_mismatched_files(tmp_path: Path) -> None:
    first = init_certificates(tmp_path / "a", ["a.example"])
    second = init_certificates(tmp_path / "b", ["a.example"])
    shutil.copy(second.server_cert, first.server_cert)
    with pytest.raises(UserError, match="was not signed by"):
        check_certificates(first)
    shutil.copy(second.ca_cert, first.ca_cert)
    with pytest.raises(UserError, match="is not the private key of"):
        check_certificates(first)


def test_check_certificates_catches_expiry(certs: CertificatePaths) -> None:
    with pytest.raises(UserError, match="is valid from"):
        check_certificates(certs, at=datetime.now(UTC) + timedelta(days=31))
    certs.ca_cert.write_text("nope")
    with pytest.raises(UserError, match="not a PEM certificate"):
        check_certificates(certs)


def _handshake(certs: CertificatePaths, server_hostname: str) -> None:
    """A real TLS handshake between two in-memory endpoints: no sockets, no network."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.server_cert, certs.server_key)
    client_ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("hostname", ["fl.example.org", "localhost", "127.0.0.1", "10.1.2.3"])
def test_tls_handshake_trusts_the_ca_for_every_name(certs: CertificatePaths, hostname: str) -> None:
    _handshake(certs, hostname)


def test_tls_handshake_refuses_an_unnamed_host(certs: CertificatePaths) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        _handshake(certs, "elsewhere.example.org")
