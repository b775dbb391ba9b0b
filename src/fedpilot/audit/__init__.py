"""The audit log: a tamper-evident record of who took part in a run and what became of
every update, and of the actions taken on its models.

``audit.jsonl`` in the run directory holds one JSON object a line, each carrying the hash
of the line before (:mod:`.chain`); the chain's head is signed with an Ed25519 key at the
end of every round and of the run (:mod:`.keys` says where the key lives).
:class:`AuditLogCallback` writes a run's lines, :func:`append` records an action from
outside the run (the model registry), and :func:`verify_log` (``fedpilot audit verify``)
names the first line that does not hold.
"""

from __future__ import annotations

from fedpilot.audit.callback import AuditLogCallback
from fedpilot.audit.chain import AuditLog, append
from fedpilot.audit.keys import KEY_ENV
from fedpilot.audit.verify import Verification, verify_log

__all__ = ["KEY_ENV", "AuditLog", "AuditLogCallback", "Verification", "append", "verify_log"]
