"""``fedpilot certs`` and ``fedpilot learners``: TLS certificates and learner keys."""

from __future__ import annotations

from pathlib import Path

import typer

from fedpilot.errors import UserError
from fedpilot.security.certs import MAX_DAYS, init_certificates, subject_alternative_names
from fedpilot.security.keys import (
    add_to_allow_list,
    generate_learner_keys,
    load_allow_list,
    read_public_key_file,
)

ALLOW_LIST_NAME = "authorized_learners.yaml"

certs_app = typer.Typer(
    help="TLS for real deployments: a private CA and the server certificate it signs.",
    no_args_is_help=True,
)
learners_app = typer.Typer(
    help="Learner authentication: key pairs and the allow-list the server trusts.",
    no_args_is_help=True,
)


@certs_app.command("init")
def certs_init(
    directory: Path = typer.Argument(
        ..., help="Folder for ca.crt, ca.key, server.pem, server.key."
    ),
    hosts: list[str] = typer.Option(
        ...,
        "--host",
        help="DNS name or IP address learners use to reach the server; repeat for several. "
        "localhost and 127.0.0.1 are always included.",
    ),
    days: int = typer.Option(365, "--days", min=1, max=MAX_DAYS, help="Validity in days."),
    force: bool = typer.Option(False, "--force", help="Replace existing files."),
) -> None:
    """Create a CA and a server certificate signed by it, for the SuperLink's TLS."""
    paths = init_certificates(directory, hosts, days=days, overwrite=force)
    names = ", ".join(str(n.value) for n in subject_alternative_names(hosts))
    _show(
        [
            (paths.ca_cert, "CA certificate: give it to every learner"),
            (paths.ca_key, "CA private key: keep it safe, off the server if you can"),
            (paths.server_cert, f"server certificate for {names}"),
            (paths.server_key, "server private key"),
        ]
    )
    typer.echo(
        f"Server: set `runtime.certificates: {directory}` in the spec. "
        f"Learners: `fedpilot learner --ca {paths.ca_cert}`."
    )


@learners_app.command("keygen")
def learners_keygen(
    directory: Path = typer.Argument(..., help="Folder for NAME.key and NAME.pub."),
    name: str = typer.Option(..., "--name", help="The learner's name, also the file stem."),
    allow_list: Path | None = typer.Option(
        None,
        "--allow-list",
        help=f"The allow-list to add the learner to; default DIR/{ALLOW_LIST_NAME}.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing key pair and its allow-list entry."
    ),
) -> None:
    """Create a learner key pair and allow it on the server."""
    allow_list = allow_list if allow_list is not None else directory / ALLOW_LIST_NAME
    # Check the allow-list before writing keys, so a refused name leaves no stray files.
    if allow_list.exists() and not force:
        taken = {learner.name for learner in load_allow_list(allow_list)}
        if name in taken:
            raise UserError(
                f"{allow_list} already allows a learner named {name!r}; choose another "
                "--name, or pass --force to give it a new key"
            )
    paths = generate_learner_keys(directory, name, overwrite=force)
    learner = read_public_key_file(paths.public_key, name)
    add_to_allow_list(allow_list, learner, replace=force)
    _show(
        [
            (paths.private_key, "private key: copy it to this learner only"),
            (paths.public_key, "public key"),
        ]
    )
    typer.echo(f"Allowed {name} ({learner.fingerprint}) in {allow_list}.")
    typer.echo(
        f"Server: set `runtime.authorized_learners: {allow_list}` in the spec. "
        f"Learner: `fedpilot learner --key {paths.private_key}`."
    )


@learners_app.command("list")
def learners_list(
    allow_list: Path = typer.Argument(..., help="The allow-list file."),
) -> None:
    """Print the name and key fingerprint of every allowed learner."""
    learners = load_allow_list(allow_list)
    if not learners:
        typer.echo(f"No learners in {allow_list}.")
        return
    width = max(len(learner.name) for learner in learners)
    for learner in learners:
        typer.echo(f"{learner.name:<{width}}  {learner.fingerprint}")


def _show(rows: list[tuple[Path, str]]) -> None:
    width = max(len(str(path)) for path, _ in rows)
    for index, (path, what) in enumerate(rows):
        typer.echo(f"{'wrote' if index == 0 else '':<5} {path!s:<{width}}  {what}")
