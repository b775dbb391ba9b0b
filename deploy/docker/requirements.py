"""Print fedpilot's runtime requirements from pyproject.toml, one a line, leaving out those
named on the command line.

The images install torch first from the index of their variant (CPU or CUDA build), then
everything else from here, then fedpilot itself without dependencies: pip has no way to
override a pin, and the CUDA build may be a newer torch than pyproject's CPU pin.

Usage: python requirements.py pyproject.toml [--without NAME ...]
"""

from __future__ import annotations

import argparse
import re
import tomllib


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise SystemExit(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject")
    parser.add_argument("--without", action="append", default=[])
    args = parser.parse_args()
    with open(args.pyproject, "rb") as file:
        requirements = tomllib.load(file)["project"]["dependencies"]
    left_out = {requirement_name(name) for name in args.without}
    for requirement in requirements:
        if requirement_name(requirement) not in left_out:
            print(requirement)


if __name__ == "__main__":
    main()
