"""What ``fedpilot serve`` is asked to serve: ``NAME[@alias|/version]`` and a canary share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fedpilot.errors import UserError

DEFAULT_ALIAS = "champion"

_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ModelRef:
    """A registered model and which of its versions: an alias (followed live) or a
    pinned version (served as it is)."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """``digits`` (its champion), ``digits@challenger`` or ``digits/3``.

        Raises:
            UserError: an empty name, alias or version, or a version that is not a
                positive integer.
        """
        name, at, alias = text.rpartition("@")
        if at:
            if not name or not _ALIAS.match(alias):
                raise UserError(
                    f"MODEL must look like NAME, NAME@alias or NAME/version, got {text!r}"
                    " (an alias is letters, digits, _ and -)"
                )
            return cls(name=name, alias=alias)
        name, slash, version = text.rpartition("/")
        if slash and name:
            if not version.isdigit() or int(version) < 1:
                raise UserError(
                    f"MODEL's version must be a positive integer (NAME/3), got {text!r}"
                )
            return cls(name=name, version=str(int(version)))
        if not text.strip():
            raise UserError("MODEL must name a registered model, got an empty name")
        return cls(name=text, alias=DEFAULT_ALIAS)

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class Canary:
    """Send ``percent`` % of the requests to the version the registry's ``alias`` names."""

    alias: str
    percent: float

    @property
    def basis_points(self) -> int:
        """The share in ten-thousandths: routing works in integers."""
        return round(self.percent * 100)

    @classmethod
    def parse(cls, text: str) -> Canary:
        """``challenger=10``: the alias and its share in percent, 0.01 to 100.

        Raises:
            UserError: not ``ALIAS=PERCENT``, or a share outside [0.01, 100].
        """
        alias, eq, share = text.partition("=")
        try:
            percent = float(share)
        except ValueError:
            percent = float("nan")
        if not eq or not _ALIAS.match(alias) or not 0.01 <= percent <= 100:
            raise UserError(
                "--canary must be ALIAS=PERCENT with a share from 0.01 to 100, e.g. "
                f"--canary challenger=10, got {text!r}"
            )
        return cls(alias=alias, percent=percent)
