"""The learner half of SecAgg+: advertise keys, share secrets, mask, help unmask.

Stateless between exchanges: every secret is re-derived (:mod:`.secret`), so nothing
secret is kept in the server-held learner state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedpilot.secagg import crypto
from fedpilot.secagg.graph import as_bytes, from_bytes, pack, unpack
from fedpilot.secagg.secret import round_secret


def share_info(session: str, round_: int, sender: str, holder: str) -> bytes:
    return f"fedpilot-secagg|share|{session}|{round_}|{sender}->{holder}".encode()


def mask_info(session: str, round_: int, u: str, v: str) -> bytes:
    a, b = sorted((u, v))
    return f"fedpilot-secagg|mask|{session}|{round_}|{a}|{b}".encode()


class LearnerKeys:
    """One learner's keys in one round: ``c`` encrypts shares, ``s`` makes pairwise masks."""

    def __init__(self, session: str, round_: int, learner: str) -> None:
        self.session, self.round, self.learner = session, round_, learner
        self.c = crypto.private_key(round_secret(session, round_, learner, "c"))
        self.s_bytes = round_secret(session, round_, learner, "s")
        self.s = crypto.private_key(self.s_bytes)
        self.self_seed = round_secret(session, round_, learner, "b")[: crypto.SEED_BYTES]

    def advertise(self) -> list[npt.NDArray[Any]]:
        return [from_bytes(crypto.public_bytes(self.c)), from_bytes(crypto.public_bytes(self.s))]

    def shares_for(
        self, neighbours: Sequence[str], c_public: Sequence[bytes], threshold: int
    ) -> list[npt.NDArray[Any]]:
        """One ciphertext per neighbour: its shares of the self-mask seed and of ``s``."""
        seed_shares = crypto.split(self.self_seed, threshold, len(neighbours))
        key_shares = crypto.split(self.s_bytes, threshold, len(neighbours))
        out = []
        for v, pk, (index, b_share), (_, s_share) in zip(
            neighbours, c_public, seed_shares, key_shares, strict=True
        ):
            info = share_info(self.session, self.round, self.learner, v)
            key = crypto.agree(self.c, pk, info)
            plain = json.dumps({"i": index, "b": b_share.hex(), "s": s_share.hex()}).encode()
            out.append(from_bytes(crypto.encrypt(key, plain, info)))
        return out

    def mask(
        self, quantized: npt.NDArray[np.uint64], neighbours: dict[str, bytes], bits: int
    ) -> npt.NDArray[np.uint64]:
        """``quantized`` + self mask + Σ±pairwise masks, mod 2^bits (numpy wraps uint64)."""
        n = quantized.size
        masked = quantized + self_mask(self.self_seed, n, bits)
        for v, s_public in sorted(neighbours.items()):
            words = crypto.mask_words(
                crypto.agree(
                    self.s, s_public, mask_info(self.session, self.round, self.learner, v)
                ),
                n,
                bits,
            )
            masked = masked + words if self.learner < v else masked - words
        return reduce(masked, bits)

    def reveal(
        self, senders: dict[str, bytes], ciphertexts: dict[str, bytes], dropped: set[str]
    ) -> dict[str, dict[str, list[object]]]:
        """For each sender: its share of ``s`` if it dropped, else of its self-mask seed;
        never both for one learner (that would reveal its input)."""
        answer: dict[str, dict[str, list[object]]] = {"b": {}, "s": {}}
        for v, ciphertext in sorted(ciphertexts.items()):
            info = share_info(self.session, self.round, v, self.learner)
            plain = json.loads(
                crypto.decrypt(crypto.agree(self.c, senders[v], info), ciphertext, info)
            )
            kind = "s" if v in dropped else "b"
            answer[kind][v] = [plain["i"], plain[kind]]
        return answer


def self_mask(seed: bytes, count: int, bits: int) -> npt.NDArray[np.uint64]:
    # The 16-byte Shamir secret expanded to a 32-byte ChaCha20 key.
    return crypto.mask_words(crypto.hkdf(seed, b"fedpilot-secagg|self-mask"), count, bits)


def reduce(words: npt.NDArray[np.uint64], bits: int) -> npt.NDArray[np.uint64]:
    return words & np.uint64((1 << bits) - 1) if bits < 64 else words


__all__ = ["LearnerKeys", "as_bytes", "mask_info", "pack", "reduce", "self_mask", "unpack"]
