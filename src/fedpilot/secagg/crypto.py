"""The cryptographic primitives of secure aggregation, all from maintained libraries.

``cryptography``: X25519 key agreement, HKDF-SHA256, AES-256-GCM and the ChaCha20
keystream that expands a 32-byte seed into mask words. ``shamirs``: Shamir sharing over the
prime field of p = 2^130 - 5, where a 16-byte secret is one field element. (pycryptodome's
Shamir, over GF(2^128), was the first choice; its pure-Python field multiplication made
rebuilding one secret cost ~3 ms and sharing one ~0.6 ms, half of a secure round's
overhead. ``shamirs`` works with Python's own big integers: ~1.3 ms and ~0.03 ms.)
Nothing here does I/O or keeps state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shamirs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
SEED_BYTES = 16
"""A Shamir secret (a self-mask seed, a mask-key seed): 128 bits, one field element."""
FIELD_PRIME = 2**130 - 5
"""The Shamir field's modulus: a prime just above 2^128 (Poly1305's)."""
_SHARE_BYTES = 17
"""A share's value, big-endian: below 2^130, so 17 bytes."""
_NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A ciphertext was not made with this key and associated data (or was altered)."""


def hkdf(material: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 without salt: ``material`` is already a uniformly random secret."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(material)


def private_key(material: bytes) -> X25519PrivateKey:
    """The X25519 key whose 32 private bytes are ``material`` (clamped by the library)."""
    return X25519PrivateKey.from_private_bytes(material)


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def agree(own: X25519PrivateKey, other_public: bytes, info: bytes) -> bytes:
    """A 32-byte key both ends derive: HKDF of the X25519 shared secret, bound to ``info``
    (protocol, round and both learners), so one agreement never serves two purposes."""
    shared = own.exchange(X25519PublicKey.from_public_bytes(other_public))
    return hkdf(shared, info)


def encrypt(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM with a fresh random nonce, which the result starts with."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def decrypt(key: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    """Raises:
    DecryptionError: wrong key, wrong associated data or an altered ciphertext."""
    nonce, body = ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, associated)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionError("share ciphertext failed authentication") from exc


def ring_dtype(bits: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The narrowest unsigned word that holds Z_{2^bits}: its own wrap-around is arithmetic
    mod 2^bits once reduced, since 2^bits divides the word's modulus."""
    return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)


def mask_words(seed: bytes, count: int, bits: int) -> npt.NDArray[np.unsignedinteger[Any]]:
    """``count`` words uniform in Z_{2^bits}: the ChaCha20 keystream of the 32-byte
    ``seed`` (zero nonce: every seed is used for one mask only), read as little-endian
    words of :func:`ring_dtype` (4 keystream bytes a word up to 32 bits, 8 above)."""
    if len(seed) != KEY_BYTES:
        raise ValueError(f"a mask seed is {KEY_BYTES} bytes, got {len(seed)}")
    dtype = ring_dtype(bits)
    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    keystream = stream.update(bytes(dtype.itemsize * count))
    words = np.frombuffer(keystream, dtype=dtype.newbyteorder("<")).astype(dtype)
    if bits < 8 * dtype.itemsize:
        words &= dtype.type((1 << bits) - 1)
    return words


Share = tuple[int, bytes]
"""One Shamir share: its index (1-based) and its value (17 bytes, big-endian)."""


def split(secret: bytes, threshold: int, holders: int) -> list[Share]:
    """``holders`` shares of the 16-byte ``secret``; any ``threshold`` of them rebuild it,
    fewer reveal nothing (the polynomial's other coefficients are uniform in the field)."""
    if len(secret) != SEED_BYTES:
        raise ValueError(f"a shared secret is {SEED_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= holders:
        raise ValueError(f"need 1 <= threshold <= holders, got {threshold} of {holders}")
    value = int.from_bytes(secret, "big")
    if holders == 1:  # shamirs makes at least two shares; a 1-of-1 share is the secret
        return [(1, value.to_bytes(_SHARE_BYTES, "big"))]
    shares = shamirs.shares(value, holders, modulus=FIELD_PRIME, threshold=threshold)
    return [(s.index, s.value.to_bytes(_SHARE_BYTES, "big")) for s in shares]


def combine(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares of it.

    Raises:
        ValueError: fewer than ``threshold`` shares, or ones that rebuild no 16-byte secret.
    """
    if len(shares) < threshold:
        raise ValueError(f"need {threshold} shares to rebuild a secret, got {len(shares)}")
    chosen = [
        shamirs.share(index, int.from_bytes(value, "big"), FIELD_PRIME)
        for index, value in sorted(shares)[:threshold]
    ]
    value = int(shamirs.interpolate(chosen, threshold=threshold))
    if value >= 1 << (8 * SEED_BYTES):
        raise ValueError("the shares rebuild no 16-byte secret (altered or from other secrets)")
    return value.to_bytes(SEED_BYTES, "big")
