"""The crypto core: masks cancel, secrets rebuild from the threshold of shares and not
from fewer, a share encrypted for one learner does not open for another, quantization
stays within one step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedpilot.secagg import crypto, secret
from fedpilot.secagg.graph import neighbour_graph
from fedpilot.secagg.learner import LearnerKeys, reduce, self_mask
from fedpilot.secagg.quantize import dequantize_sum, levels, quantize

BITS = 32


def test_pairwise_and_self_masks_cancel_in_the_sum() -> None:
    learners = [str(i) for i in range(6)]
    graph = neighbour_graph(learners, 4, seed=1, round_=3)
    keys = {u: LearnerKeys("session", 3, u) for u in learners}
    s_public = {u: crypto.public_bytes(keys[u].s) for u in learners}
    rng = np.random.default_rng(0)
    inputs = {u: rng.integers(0, 2**20, size=1000, dtype=np.uint64) for u in learners}
    total = np.zeros(1000, dtype=np.uint64)
    for u in learners:
        masked = keys[u].mask(inputs[u], {v: s_public[v] for v in graph[u]}, BITS)
        assert not np.array_equal(masked, inputs[u])
        total = total + masked
    for u in learners:  # the self masks, as the server removes them once rebuilt
        total = total - self_mask(keys[u].self_seed, 1000, BITS)
    assert np.array_equal(reduce(total, BITS), sum(inputs.values()))


def test_the_graph_is_symmetric_and_sparse() -> None:
    learners = [str(i) for i in range(100)]
    graph = neighbour_graph(learners, 14, seed=0, round_=1)
    assert graph == neighbour_graph(learners, 14, seed=0, round_=1)
    assert graph != neighbour_graph(learners, 14, seed=0, round_=2)
    for u, vs in graph.items():
        assert len(vs) == 14 and u not in vs
        assert all(u in graph[v] for v in vs)


def test_a_secret_rebuilds_from_the_threshold_of_shares_and_not_from_fewer() -> None:
    secret = bytes(range(16))
    shares = crypto.split(secret, 4, 7)
    assert crypto.combine(shares[3:7], 4) == secret
    assert crypto.combine([shares[0], shares[2], shares[4], shares[6]], 4) == secret
    with pytest.raises(ValueError, match="need 4 shares"):
        crypto.combine(shares[:3], 4)
    # Three shares interpolate to some field element, but not to the secret (most such
    # elements are past 2^128: no 16-byte secret at all).
    try:
        assert crypto.combine(shares[:3], 3) != secret
    except ValueError as exc:
        assert "no 16-byte secret" in str(exc)
    assert crypto.combine(crypto.split(secret, 1, 1), 1) == secret
    with pytest.raises(ValueError, match="16 bytes"):
        crypto.split(bytes(32), 4, 7)


def test_the_shamir_field_is_prime_and_holds_every_secret() -> None:
    p = crypto.FIELD_PRIME
    assert p > 2**128  # every 16-byte secret is a field element
    # Fermat and Miller-Rabin witnesses: a composite p fails most bases.
    assert all(pow(a, p - 1, p) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37))
    top = bytes([255] * 16)
    assert crypto.combine(crypto.split(top, 3, 5)[1:4], 3) == top


def test_a_share_opens_only_with_its_key_and_context() -> None:
    alice, bob, eve = (LearnerKeys("s", 1, name) for name in ("a", "b", "e"))
    info = b"share a->b"
    key = crypto.agree(alice.c, crypto.public_bytes(bob.c), info)
    assert key == crypto.agree(bob.c, crypto.public_bytes(alice.c), info)
    ciphertext = crypto.encrypt(key, b"share", info)
    assert crypto.decrypt(key, ciphertext, info) == b"share"
    wrong = crypto.agree(eve.c, crypto.public_bytes(alice.c), info)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(wrong, ciphertext, info)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(key, ciphertext, b"share a->e")
    tampered = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(key, tampered, info)


def test_mask_words_are_a_keystream_not_a_folded_seed() -> None:
    a = crypto.mask_words(bytes(32), 10_000, BITS)
    b = crypto.mask_words(bytes(31) + b"\x01", 10_000, BITS)
    assert a.max() < 2**BITS and not np.array_equal(a, b)
    assert abs(a.mean() / 2**BITS - 0.5) < 0.02  # uniform over the ring


def test_quantization_error_is_within_one_step_and_the_sum_does_not_wrap() -> None:
    clip, n = 0.5, 50
    rng = np.random.default_rng(1)
    updates = [rng.uniform(-clip, clip, size=2000) for _ in range(n)]
    step = 2 * clip / levels(BITS, n)
    total = np.zeros(2000, dtype=np.uint64)
    for i, x in enumerate(updates):
        q = quantize(x, clip=clip, bits=BITS, max_summands=n, rng=np.random.default_rng(i))
        total = total + q
    assert total.max() < 2**BITS
    got = dequantize_sum(total, count=n, clip=clip, bits=BITS, max_summands=n)
    assert np.max(np.abs(got - sum(updates))) <= n * step
    # Values beyond the range are clipped to it.
    q = quantize(np.array([5.0, -5.0]), clip=clip, bits=BITS, max_summands=1, rng=rng)
    assert np.allclose(
        dequantize_sum(q, count=1, clip=clip, bits=BITS, max_summands=1), [clip, -clip]
    )


def test_the_machine_secret_is_a_private_key_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = secret.machine_secret()
    path = tmp_path / "cache" / "fedpilot" / "secagg.key"
    assert path.read_bytes() == first and path.stat().st_mode & 0o777 == 0o600
    assert secret.machine_secret() == first  # created once
    a = secret.round_secret("run", 1, "0", "s")
    assert a != secret.round_secret("run", 2, "0", "s") != secret.round_secret("run", 1, "1", "s")
    monkeypatch.setenv(secret.ENV, "ab" * 32)
    assert secret.machine_secret() == bytes.fromhex("ab" * 32)
    monkeypatch.setenv(secret.ENV, "ab")
    with pytest.raises(ValueError, match="FEDPILOT_SECAGG_SECRET"):
        secret.machine_secret()
