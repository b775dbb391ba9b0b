"""Learner key pairs, the allow-list, and fingerprints across encodings."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fedpilot.errors import UserError
from fedpilot.security import (
    AuthorizedLearner,
    add_to_allow_list,
    generate_learner_keys,
    load_allow_list,
    openssh_public_key,
    public_key_fingerprint,
    public_key_for_flower,
    read_public_key_file,
)

FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def _ssh_line(key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _learner(name: str, curve: ec.EllipticCurve | None = None) -> AuthorizedLearner:
    key = ec.generate_private_key(curve or ec.SECP384R1()).public_key()
    return AuthorizedLearner(name=name, public_key=_ssh_line(key))


# Key pairs


def test_private_key_is_openssh_ec_p384_and_matches_the_public_key(tmp_path: Path) -> None:
    paths = generate_learner_keys(tmp_path / "keys", "hospital-a")
    assert paths.private_key == tmp_path / "keys" / "hospital-a.key"
    assert paths.public_key == tmp_path / "keys" / "hospital-a.pub"
    data = paths.private_key.read_bytes()
    assert data.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")  # what flower-supernode reads
    private = serialization.load_ssh_private_key(data, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    line = paths.public_key.read_text()
    assert line.startswith("ecdsa-sha2-nistp384 AAAA") and line.endswith(" hospital-a\n")
    public = serialization.load_ssh_public_key(line.encode())
    assert _pem(public) == _pem(private.public_key())  # type: ignore[arg-type]


def test_key_file_modes_ignore_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        paths = generate_learner_keys(tmp_path, "a")
    finally:
        os.umask(old)
    assert stat.S_IMODE(paths.private_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.public_key.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "a.pub"]


def test_keygen_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    paths = generate_learner_keys(tmp_path, "a")
    before = paths.private_key.read_bytes()
    with pytest.raises(UserError, match=r"refusing to overwrite .*a\.key"):
        generate_learner_keys(tmp_path, "a")
    assert paths.private_key.read_bytes() == before
    generate_learner_keys(tmp_path, "a", overwrite=True)
    assert paths.private_key.read_bytes() != before


@pytest.mark.parametrize("name", ["a", "x" * 64, "hospital-A_1.v2", "0site"])
def test_valid_names(tmp_path: Path, name: str) -> None:
    assert generate_learner_keys(tmp_path, name).private_key.name == f"{name}.key"


@pytest.mark.parametrize(
    "name", ["", "-a", ".hidden", "a b", "a/b", "../up", "x" * 65, "é", "a\n", None]
)
def test_invalid_names_are_named(tmp_path: Path, name: object) -> None:
    with pytest.raises(UserError, match="1-64 letters, digits") as info:
        generate_learner_keys(tmp_path, name)  # type: ignore[arg-type]
    assert repr(name) in str(info.value)
    assert not any(tmp_path.iterdir())


# Fingerprints and encodings


def test_fingerprint_is_the_same_for_openssh_and_pem(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    line = _ssh_line(key)
    pem = _pem(key)
    logged = f"Attempted to register SuperNode with public key: {pem!r}, exception: ..."
    prints = {
        public_key_fingerprint(line),
        public_key_fingerprint(f"{line} some comment\n"),
        public_key_fingerprint(line.encode()),
        public_key_fingerprint(pem),
        public_key_fingerprint(pem.decode()),
        public_key_fingerprint(logged),  # as the SuperLink logs a refused learner
    }
    assert len(prints) == 1
    assert FINGERPRINT.fullmatch(prints.pop())
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert public_key_fingerprint(_ssh_line(other)) != public_key_fingerprint(line)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_fingerprint_matches_ssh_keygen(tmp_path: Path, curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve).public_key()
    pub = tmp_path / "k.pub"
    pub.write_text(_ssh_line(key) + " k\n")
    out = subprocess.run(
        ["ssh-keygen", "-E", "sha256", "-lf", pub], capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[1] == public_key_fingerprint(_pem(key))


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_fingerprint_of_generated_pair_matches_ssh_keygen_on_the_private_key(
    tmp_path: Path,
) -> None:
    paths = generate_learner_keys(tmp_path, "a")
    out = subprocess.run(
        ["ssh-keygen", "-E", "sha256", "-lf", paths.private_key],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split()[1] == public_key_fingerprint(paths.public_key.read_text())


def test_fingerprint_works_for_other_openssh_key_types() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    assert FINGERPRINT.fullmatch(public_key_fingerprint(_ssh_line(key)))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "ecdsa-sha2-nistp384 !!!notbase64",
        "-----BEGIN PUBLIC KEY-----\n%%%\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
)
def test_fingerprint_of_garbage_is_a_user_error(bad: str | bytes) -> None:
    with pytest.raises(UserError, match="cannot read the public key"):
        public_key_fingerprint(bad)


def test_openssh_public_key_converts_pem() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert openssh_public_key(_pem(key)) == _ssh_line(key)
    assert openssh_public_key(_ssh_line(key) + " comment") == _ssh_line(key)


def test_public_key_for_flower_is_pem_spki() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    data = public_key_for_flower(AuthorizedLearner("a", _ssh_line(key)))
    assert data.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert data == _pem(key)


def test_public_key_for_flower_matches_flowers_own_serialisation() -> None:
    asymmetric = pytest.importorskip("flwr.supercore.primitives.asymmetric")
    private = ec.generate_private_key(ec.SECP384R1())
    learner = AuthorizedLearner("a", _ssh_line(private.public_key()))
    data = public_key_for_flower(learner)
    assert data == asymmetric.public_key_to_bytes(private.public_key())
    assert asymmetric.uses_nist_ec_curve(asymmetric.bytes_to_public_key(data))


def test_public_key_for_flower_refuses_non_nist_keys() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(UserError, match="NIST"):
        public_key_for_flower(AuthorizedLearner("a", _ssh_line(key)))


def test_read_public_key_file(tmp_path: Path) -> None:
    paths = generate_learner_keys(tmp_path, "a")
    learner = read_public_key_file(paths.public_key, "site-a")
    assert learner.name == "site-a"
    assert learner.public_key == paths.public_key.read_text().rsplit(" ", 1)[0]
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "pem.pub").write_bytes(_pem(key))
    assert read_public_key_file(tmp_path / "pem.pub", "b").public_key == _ssh_line(key)
    with pytest.raises(UserError, match="cannot read the public key file"):
        read_public_key_file(tmp_path / "missing.pub", "c")
    (tmp_path / "rsa.pub").write_text(
        _ssh_line(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    )
    with pytest.raises(UserError, match=r"rsa\.pub.*NIST"):
        read_public_key_file(tmp_path / "rsa.pub", "d")


# The allow-list


def test_allow_list_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "allow.yaml"
    alice = _learner("alice")
    bob = AuthorizedLearner("bob", _learner("x", ec.SECP256R1()).public_key + " bob@laptop")
    assert add_to_allow_list(path, alice) == [alice]
    written = add_to_allow_list(path, bob)
    loaded = load_allow_list(path)
    assert loaded == written
    assert [x.name for x in loaded] == ["alice", "bob"]
    assert loaded[0] == alice
    assert loaded[1].public_key == bob.public_key.rsplit(" ", 1)[0]  # comment dropped
    assert loaded[1].fingerprint == public_key_fingerprint(bob.public_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["allow.yaml"]  # no temp files
    raw = yaml.safe_load(path.read_text())
    assert raw == {"learners": [{"name": x.name, "public_key": x.public_key} for x in loaded]}


def test_add_keeps_the_files_permissions(tmp_path: Path) -> None:
    path = tmp_path / "allow.yaml"
    add_to_allow_list(path, _learner("a"))
    path.chmod(0o640)
    add_to_allow_list(path, _learner("b"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_add_refuses_a_taken_name_unless_replacing(tmp_path: Path) -> None:
    path = tmp_path / "allow.yaml"
    add_to_allow_list(path, _learner("a"))
    add_to_allow_list(path, _learner("b"))
    newer = _learner("a")
    with pytest.raises(UserError, match="already allows a learner named 'a'"):
        add_to_allow_list(path, newer)
    assert add_to_allow_list(path, newer, replace=True)[-1] == newer
    assert [x.name for x in load_allow_list(path)] == ["b", "a"]


def test_add_refuses_a_taken_key(tmp_path: Path) -> None:
    path = tmp_path / "allow.yaml"
    alice = _learner("alice")
    add_to_allow_list(path, alice)
    with pytest.raises(UserError, match=r"already allows this key \(SHA256:.*\) as 'alice'"):
        add_to_allow_list(path, AuthorizedLearner("mallory", alice.public_key + " other"))
    # Replacing an entry by its own key is fine; replace=True frees the name, not the key.
    assert add_to_allow_list(path, alice, replace=True) == [alice]
    with pytest.raises(UserError, match="already allows this key"):
        add_to_allow_list(path, AuthorizedLearner("eve", alice.public_key), replace=True)


@pytest.mark.parametrize(
    ("learner", "message"),
    [
        (AuthorizedLearner("bad name", "x"), r"learner\.name must be 1-64"),
        (AuthorizedLearner("a", "ssh-rsa AAAA"), r"learner\.public_key \('a'\): not a valid"),
    ],
)
def test_add_refuses_an_invalid_entry(
    tmp_path: Path, learner: AuthorizedLearner, message: str
) -> None:
    path = tmp_path / "allow.yaml"
    with pytest.raises(UserError, match=message):
        add_to_allow_list(path, learner)
    assert not path.exists()


def test_an_empty_file_is_an_empty_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "allow.yaml"
    path.write_text("")
    assert load_allow_list(path) == []
    path.write_text("learners: []\n")
    assert load_allow_list(path) == []
    add_to_allow_list(path, _learner("a"))
    assert len(load_allow_list(path)) == 1


KEY_A = _learner("a").public_key
KEY_B = _learner("b").public_key
ED25519 = _ssh_line(ed25519.Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learners: [oops", "is not valid YAML"),
        ("- a\n- b\n", "must be a mapping with one key, `learners:`"),
        ("learners: []\nextra: 1\n", r"must be a mapping .*got \['extra', 'learners'\]"),
        ("learners: 5\n", "`learners` must be a list, got int"),
        ("learners: {}\n", "`learners` must be a list, got dict"),
        ("learners:\n- 5\n", r"learners\[0\] must be a mapping with `name` and `public_key`"),
        ("learners:\n- {name: a}\n", r"learners\[0\] must have .*missing public_key"),
        (
            f"learners:\n- {{name: a, public_key: {KEY_A}, role: admin}}\n",
            r"learners\[0\] must have .*unknown role",
        ),
        (f"learners:\n- {{name: -a, public_key: {KEY_A}}}\n", r"learners\[0\]\.name must be"),
        (f"learners:\n- {{name: 7, public_key: {KEY_A}}}\n", r"learners\[0\]\.name .*name=7"),
        ("learners:\n- {name: a, public_key: 5}\n", r"learners\[0\]\.public_key must be"),
        (
            f"learners:\n- {{name: a, public_key: {KEY_A}}}\n- {{name: b, public_key: nope}}\n",
            r"learners\[1\]\.public_key \('b'\): not a valid public key",
        ),
        (
            f"learners:\n- {{name: a, public_key: {ED25519}}}\n",
            r"learners\[0\]\.public_key \('a'\): Flower accepts EC keys on a NIST curve",
        ),
        (
            f"learners:\n- {{name: a, public_key: {KEY_A}}}\n- {{name: a, public_key: {KEY_B}}}\n",
            r"learners\[1\]\.name 'a' repeats learners\[0\]",
        ),
        (
            f"learners:\n- {{name: a, public_key: {KEY_A}}}\n"
            f"- {{name: b, public_key: {KEY_A} copy}}\n",
            r"learners\[1\]\.public_key \('b'\) is the same key as learners\[0\]",
        ),
    ],
)
def test_load_errors_name_the_file_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "allow.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_allow_list(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)  # one paragraph


def test_load_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserError, match="does not exist") as info:
        load_allow_list(path)
    assert f"--allow-list {path}" in str(info.value)


def test_add_refuses_to_touch_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "allow.yaml"
    path.write_text("learners: 5\n")
    with pytest.raises(UserError, match="must be a list"):
        add_to_allow_list(path, _learner("a"))
    assert path.read_text() == "learners: 5\n"
