"""`fedpilot certs` and `fedpilot learners` through the CLI entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from fedpilot.cli import main
from fedpilot.security import CertificatePaths, check_certificates, load_allow_list


def test_certs_init_writes_a_valid_set_and_hints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = tmp_path / "tls"
    code = main(["certs", "init", str(tls), "--host", "fl.example.org", "--host", "10.0.0.5"])
    out = capsys.readouterr().out
    assert code == 0
    paths = CertificatePaths.in_dir(tls)
    check_certificates(paths)
    assert all(str(p) in out for p in paths.files())
    assert "fl.example.org, 10.0.0.5, localhost, 127.0.0.1" in out
    assert f"runtime.certificates: {tls}" in out
    assert f"fedpilot learner --ca {paths.ca_cert}" in out
    san = x509.load_pem_x509_certificate(paths.server_cert.read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "fl.example.org" in names.get_values_for_type(x509.DNSName)


def test_certs_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["certs", "init", str(tmp_path), "--host", "a.example"]
    assert main(args) == 0
    ca = (tmp_path / "ca.crt").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "ca.crt" in err and "Traceback" not in err
    assert (tmp_path / "ca.crt").read_bytes() == ca
    assert main([*args, "--force", "--days", "10"]) == 0
    assert (tmp_path / "ca.crt").read_bytes() != ca


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "a b"], "host='a b'"),
        (["--host", "fl.example.org:8000"], "the port is not part of a certificate"),
        (["--host", "a.example", "--days", "0"], "--days"),
        ([], "--host"),
    ],
)
def test_certs_init_user_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["certs", "init", str(tmp_path / "tls"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "tls").exists()


def test_keygen_writes_keys_allows_the_learner_and_hints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    assert main(["learners", "keygen", str(keys), "--name", "hospital-a"]) == 0
    out = capsys.readouterr().out
    allow_list = keys / "authorized_learners.yaml"
    [learner] = load_allow_list(allow_list)
    assert learner.name == "hospital-a"
    assert (keys / "hospital-a.pub").read_text().startswith(learner.public_key)
    assert str(keys / "hospital-a.key") in out and str(keys / "hospital-a.pub") in out
    assert learner.fingerprint in out
    assert f"runtime.authorized_learners: {allow_list}" in out
    assert f"fedpilot learner --key {keys / 'hospital-a.key'}" in out


def test_keygen_to_a_shared_allow_list_and_list_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allow_list = tmp_path / "server" / "allowed.yaml"
    for name in ("a", "site-bb"):
        args = ["learners", "keygen", str(tmp_path / name), "--name", name]
        assert main([*args, "--allow-list", str(allow_list)]) == 0
    capsys.readouterr()
    assert main(["learners", "list", str(allow_list)]) == 0
    lines = capsys.readouterr().out.splitlines()
    learners = load_allow_list(allow_list)
    assert lines == [
        f"a        {learners[0].fingerprint}",
        f"site-bb  {learners[1].fingerprint}",
    ]


def test_keygen_refuses_a_taken_name_before_writing_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allow_list = tmp_path / "allowed.yaml"
    first = ["learners", "keygen", str(tmp_path / "one"), "--name", "a"]
    assert main([*first, "--allow-list", str(allow_list)]) == 0
    capsys.readouterr()
    second = ["learners", "keygen", str(tmp_path / "two"), "--name", "a"]
    assert main([*second, "--allow-list", str(allow_list)]) == 2
    assert "already allows a learner named 'a'" in capsys.readouterr().err
    assert not (tmp_path / "two").exists()
    # --force gives the learner the new key: one entry, the new fingerprint.
    assert main([*second, "--allow-list", str(allow_list), "--force"]) == 0
    [learner] = load_allow_list(allow_list)
    assert (tmp_path / "two" / "a.pub").read_text().startswith(learner.public_key)


def test_keygen_force_replaces_the_pair_in_place(tmp_path: Path) -> None:
    args = ["learners", "keygen", str(tmp_path), "--name", "a"]
    assert main(args) == 0
    old = (tmp_path / "a.key").read_bytes()
    assert main(args) == 2
    assert main([*args, "--force"]) == 0
    assert (tmp_path / "a.key").read_bytes() != old
    [learner] = load_allow_list(tmp_path / "authorized_learners.yaml")
    assert (tmp_path / "a.pub").read_text().startswith(learner.public_key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["learners", "keygen", "DIR", "--name", "../x"], "name='../x'"),
        (["learners", "keygen", "DIR"], "--name"),
        (["learners", "list", "DIR/missing.yaml"], "does not exist"),
        (["learners", "list", "DIR/bad.yaml"], "`learners` must be a list"),
    ],
)
def test_learners_user_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "bad.yaml").write_text("learners: {}\n")
    argv = [a.replace("DIR", str(tmp_path)) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_list_an_empty_allow_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "allow.yaml").write_text("learners: []\n")
    assert main(["learners", "list", str(tmp_path / "allow.yaml")]) == 0
    assert "No learners" in capsys.readouterr().out


def test_security_commands_do_not_import_torch_or_flower(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from fedpilot.cli import main\n"
        f"assert main(['certs', 'init', {str(tmp_path / 'tls')!r}, '--host', 'a.example']) == 0\n"
        f"assert main(['learners', 'keygen', {str(tmp_path / 'k')!r}, '--name', 'a']) == 0\n"
        "heavy = sorted({'torch', 'flwr'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_learner_whose_ca_is_not_a_certificate_is_told_before_it_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedpilot.deployment.supernode import free_port

    junk = tmp_path / "ca.crt"
    junk.write_text("not a certificate\n")
    args = ["learner", "--server", f"127.0.0.1:{free_port()}", "--partition", "0/3"]
    code = main([*args, "--ca", str(junk), "--workdir", str(tmp_path / "node")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "`--ca` must be the server's CA certificate" in err and str(junk) in err
    assert "Traceback" not in err and not (tmp_path / "node" / "supernode.log").exists()
