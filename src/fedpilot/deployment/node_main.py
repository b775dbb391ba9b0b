"""Flower's SuperNode with shorter fixed waits (:mod:`.tuning`), as ``fedpilot learner``
runs it. Everything else is Flower's own ``flower-supernode``.

Usage: ``python -m fedpilot.deployment.node_main IDLE_CAP_S REPLY_S -- <supernode args>``
"""

from __future__ import annotations

import sys

from fedpilot.deployment.tuning import shorten_supernode_waits


def main(argv: list[str]) -> None:
    idle, reply, separator, *supernode_args = argv
    if separator != "--":
        raise SystemExit(__doc__)
    shorten_supernode_waits(float(idle), float(reply))
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *supernode_args]
    flower_supernode()


if __name__ == "__main__":
    main(sys.argv[1:])
