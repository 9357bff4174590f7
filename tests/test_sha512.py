"""The pure-Python SHA-512 against hashlib, on every length around the block boundaries and more."""

import hashlib
import random

import pytest

from updater import sha512 as sha512_mod
from updater.sha512 import Sha512, sha512, sha512_pure


def test_fips_180_examples():
    assert sha512_pure(b"abc").hex() == (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
    assert sha512_pure(b"").hex().startswith("cf83e1357eefb8bdf1542850d66d8007")
    two_block = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
    assert sha512_pure(two_block).hex() == (
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")


def test_every_length_0_to_300_random_content():
    rng = random.Random(512)
    for n in range(301):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert sha512_pure(data) == hashlib.sha512(data).digest(), n


def test_incremental_updates_in_random_pieces():
    rng = random.Random(7)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1200)))
        h = Sha512()
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 7, 63, 127, 128, 129, 300])
            h.update(data[pos : pos + step])
            pos += step
        assert h.digest() == hashlib.sha512(data).digest()


def test_megabytes():
    rng = random.Random(3)
    data = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 40  # 2.5 MiB, not block-aligned below
    data = data + b"tail-not-aligned"
    assert sha512_pure(data) == hashlib.sha512(data).digest()


def test_digest_only_once_and_no_update_after():
    h = Sha512(b"x")
    h.digest()
    with pytest.raises(ValueError):
        h.digest()
    with pytest.raises(ValueError):
        h.update(b"y")


def test_sha512_falls_back_to_pure_when_hashlib_lacks_it(monkeypatch):
    monkeypatch.setattr(sha512_mod, "_native", None)
    assert sha512(b"abc") == hashlib.sha512(b"abc").digest()
    assert sha512_mod._native is None
