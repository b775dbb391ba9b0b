"""The learner half of SecAgg+: advertise keys, share secrets, mask, help unmask.

Stateless between exchanges: every secret is re-derived (:mod:`.secret`), so nothing
secret is kept in the server-held learner state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedpilot.secagg import crypto
from fedpilot.secagg.graph import as_bytes, from_bytes, pack, unpack
from fedpilot.secagg.secret import round_secret


def share_info(session: str, round_: int, sender: str, holder: str) -> bytes:
    return f"fedpilot-secagg|share|{session}|{round_}|{sender}->{holder}".encode()


def mask_info(session: str, round_: int, u: str, v: str) -> bytes:
    a, b = sorted((u, v))
    return f"fedpilot-secagg|mask|{session}|{round_}|{a}|{b}".encode()


class LearnerKeys:
    """One learner's keys in one round: ``c`` encrypts shares, ``s`` makes pairwise masks.

    Each is derived when first used: an exchange needs only some of them.
    """

    def __init__(self, session: str, round_: int, learner: str) -> None:
        self.session, self.round, self.learner = session, round_, learner

    @cached_property
    def c(self) -> X25519PrivateKey:
        return crypto.private_key(round_secret(self.session, self.round, self.learner, "c"))

    @cached_property
    def s_seed(self) -> bytes:
        """The 16-byte secret ``s`` derives from: one Shamir block to share, not two."""
        return round_secret(self.session, self.round, self.learner, "s")[: crypto.SEED_BYTES]

    @cached_property
    def s(self) -> X25519PrivateKey:
        return mask_key(self.s_seed)

    @cached_property
    def self_seed(self) -> bytes:
        return round_secret(self.session, self.round, self.learner, "b")[: crypto.SEED_BYTES]

    def advertise(self) -> list[npt.NDArray[Any]]:
        return [from_bytes(crypto.public_bytes(self.c)), from_bytes(crypto.public_bytes(self.s))]

    def shares_for(
        self, neighbours: Sequence[str], c_public: Sequence[bytes], threshold: int
    ) -> list[npt.NDArray[Any]]:
        """One ciphertext per neighbour: its shares of the self-mask seed and of ``s``."""
        seed_shares = crypto.split(self.self_seed, threshold, len(neighbours))
        key_shares = crypto.split(self.s_seed, threshold, len(neighbours))
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
        self,
        quantized: npt.NDArray[np.unsignedinteger[Any]],
        neighbours: dict[str, bytes],
        bits: int,
    ) -> npt.NDArray[np.unsignedinteger[Any]]:
        """``quantized`` + self mask + Σ±pairwise masks, mod 2^bits, in place on one
        array of the ring's word (whose wrap-around is the modular arithmetic)."""
        masked = self_mask(self.self_seed, quantized.size, bits)
        np.add(masked, quantized, out=masked, casting="unsafe")
        for v, s_public in sorted(neighbours.items()):
            words = crypto.mask_words(
                crypto.agree(
                    self.s, s_public, mask_info(self.session, self.round, self.learner, v)
                ),
                quantized.size,
                bits,
            )
            if self.learner < v:
                np.add(masked, words, out=masked)
            else:
                np.subtract(masked, words, out=masked)
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


def mask_key(seed: bytes) -> X25519PrivateKey:
    """The pairwise-mask key of a 16-byte seed (HKDF to the 32 private bytes): the server
    rebuilds a dropped learner's key from the shares of its seed."""
    return crypto.private_key(crypto.hkdf(seed, b"fedpilot-secagg|mask-key"))


def self_mask(seed: bytes, count: int, bits: int) -> npt.NDArray[np.unsignedinteger[Any]]:
    # The 16-byte Shamir secret expanded to a 32-byte ChaCha20 key.
    return crypto.mask_words(crypto.hkdf(seed, b"fedpilot-secagg|self-mask"), count, bits)


def reduce(
    words: npt.NDArray[np.unsignedinteger[Any]], bits: int
) -> npt.NDArray[np.unsignedinteger[Any]]:
    """``words`` mod 2^bits (in place; a no-op when the word is exactly ``bits`` wide)."""
    if bits < 8 * words.dtype.itemsize:
        words &= words.dtype.type((1 << bits) - 1)
    return words


__all__ = [
    "LearnerKeys",
    "as_bytes",
    "mask_info",
    "mask_key",
    "pack",
    "reduce",
    "self_mask",
    "unpack",
]
