"""Strict Ed25519 verification: RFC 8032 vectors, 200+ random keys cross-checked with `cryptography`,
forged and tampered signatures, and the strictness checks OpenSSL does not make."""

import hashlib
import os
import random
import sys

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from updater import ed25519

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpy"))
import ed25519_vectors as V  # noqa: E402

N_RANDOM = 220


def crypto_verify(pub, msg, sig):
    """What OpenSSL (through `cryptography`) says, with no extra checks."""
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def pure_sign(seed, msg):
    """RFC 8032 5.1.6 with this module's arithmetic (checks the point code in the other direction)."""
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    pub = ed25519.encode_point(ed25519._double_scalar(a, 0, ed25519.BASE))
    r = int.from_bytes(hashlib.sha512(h[32:] + msg).digest(), "little") % ed25519.L
    big_r = ed25519.encode_point(ed25519._double_scalar(r, 0, ed25519.BASE))
    k = int.from_bytes(hashlib.sha512(big_r + pub + msg).digest(), "little") % ed25519.L
    return pub, big_r + ((r + k * a) % ed25519.L).to_bytes(32, "little")


@pytest.fixture(params=["pure", "fast"])
def verify(request):
    if request.param == "fast" and not ed25519.have_fast_path():
        pytest.fail("cryptography should be importable in the test environment")
    return ed25519.verify_pure if request.param == "pure" else ed25519.verify


@pytest.mark.parametrize("vec", V.VALID, ids=[v[0] for v in V.VALID])
def test_rfc8032_vectors(vec, verify):
    name, seed, pub, msg, sig = (vec[0],) + tuple(bytes.fromhex(x) for x in vec[1:])
    assert verify(pub, msg, sig)
    assert crypto_verify(pub, msg, sig)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert key.public_key().public_bytes_raw() == pub
    assert key.sign(msg) == sig
    assert pure_sign(seed, msg) == (pub, sig)
    assert not verify(pub, msg + b"\x00", sig)


@pytest.mark.parametrize("vec", V.INVALID, ids=[v[0] for v in V.INVALID])
def test_invalid_vectors_refused(vec, verify):
    pub, msg, sig = (bytes.fromhex(x) for x in vec[1:])
    assert not verify(pub, msg, sig)


def test_where_openssl_is_laxer_we_refuse():
    laxer = [v for v in V.INVALID if "OpenSSL accepts" in v[0]]
    assert len(laxer) == 3
    for name, pub, msg, sig in laxer:
        pub, msg, sig = bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig)
        assert crypto_verify(pub, msg, sig), name  # a "signature" anyone can make for these keys
        assert not ed25519.verify(pub, msg, sig), name
        assert not ed25519.verify_pure(pub, msg, sig), name


def _tamper(rng, data):
    out = bytearray(data)
    if not out:
        return b"\x00"
    out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def test_random_keys_and_tampering_agree_with_cryptography():
    rng = random.Random(25519)
    counts = {"valid": 0, "sig": 0, "msg": 0, "key": 0, "other_key": 0}
    prev_pub = None
    for i in range(N_RANDOM):
        seed = bytes(rng.getrandbits(8) for _ in range(32))
        msg = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 31, 64, 100, 1000, rng.randrange(300)])))
        key = Ed25519PrivateKey.from_private_bytes(seed)
        pub = key.public_key().public_bytes_raw()
        sig = key.sign(msg)
        assert ed25519.verify_pure(pub, msg, sig) and ed25519.verify(pub, msg, sig)
        counts["valid"] += 1
        cases = [("sig", pub, msg, _tamper(rng, sig)), ("msg", pub, _tamper(rng, msg), sig),
                 ("key", _tamper(rng, pub), msg, sig)]
        if prev_pub is not None:
            cases.append(("other_key", prev_pub, msg, sig))
        for kind, p, m, s in cases:
            want = crypto_verify(p, m, s)
            assert ed25519.verify_pure(p, m, s) == want, (i, kind)
            assert ed25519.verify(p, m, s) == want, (i, kind)
            assert not want, (i, kind)  # a one-bit change never verifies
            counts[kind] += 1
        prev_pub = pub
    assert counts["valid"] >= 200 and counts["sig"] >= 200 and counts["key"] >= 200


def test_forged_signatures_never_verify():
    rng = random.Random(9)
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    for _ in range(50):
        forged = bytes(rng.getrandbits(8) for _ in range(64))
        assert not ed25519.verify_pure(pub, b"firmware", forged)
        assert not crypto_verify(pub, b"firmware", forged)
    assert not ed25519.verify_pure(pub, b"firmware", bytes(64))


def test_decoding_is_strict():
    assert ed25519.decode_point((1).to_bytes(32, "little")) == (0, 1)
    x_zero_sign_set = bytearray((1).to_bytes(32, "little"))
    x_zero_sign_set[31] |= 0x80
    assert ed25519.decode_point(bytes(x_zero_sign_set)) is None  # RFC 8032 5.1.3 step 4
    for y in range(ed25519.P, 1 << 255):
        assert ed25519.decode_point(y.to_bytes(32, "little")) is None  # y >= p: all 19 encodings
    assert ed25519.decode_point(b"\x01" * 31) is None
    base = ed25519.encode_point(ed25519.BASE)
    assert ed25519.decode_point(base) == (ed25519.BX, ed25519.BY)


def test_public_key_problem():
    good = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert ed25519.public_key_problem(good) is None
    assert "small-order" in ed25519.public_key_problem((1).to_bytes(32, "little"))
    assert "valid curve point" in ed25519.public_key_problem(((1 << 255) - 1).to_bytes(32, "little"))
    assert "32 bytes" in ed25519.public_key_problem(good[:31])


def test_without_cryptography_the_pure_path_is_used(monkeypatch):
    vec = V.VALID[1]
    pub, msg, sig = (bytes.fromhex(x) for x in vec[2:])
    monkeypatch.setattr(ed25519, "_PublicKey", None)
    assert not ed25519.have_fast_path()
    assert ed25519.verify(pub, msg, sig)
    assert not ed25519.verify(pub, msg + b"!", sig)
