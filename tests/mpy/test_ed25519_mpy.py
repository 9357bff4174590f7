# heap: 512K
"""Ed25519, signature files and signed summaries under MicroPython (no cryptography, no sha512).

RFC 8032 vectors and strictness cases verified by the pure path within the heap budget above,
with the time per verify printed and bounded; a summary signed on CPython (embedded below, and
more cases from $TRUST_CASES written by tests/test_summary.py) accepted or refused exactly as
CPython decides.
"""

import os
import time

from ed25519_vectors import INVALID, VALID
from mpytest import raises, run, scratch

from updater import ed25519, signature, summary, trust
from updater.errors import FormatError, TrustError
from updater.sysroot import DeviceConfig, Sysroot

unhex = bytes.fromhex
MAX_VERIFY_MS = 1000

# Made on CPython by updater.host.keys with the RFC 8032 TEST 1 seed (public key below).
KEY = unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SUMMARY = unhex(
    "a66664656c74617382a562746f5820000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6466"
    "726f6df66a746f74616c5f73697a6519c3506f7375706572626c6f636b5f73697a651903e8717375706572626c6f636b5f"
    "73686132353658201111111111111111111111111111111111111111111111111111111111111111a562746f5820000102"
    "030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6466726f6d58200102030405060708090a0b0c0d"
    "0e0f101112131415161718191a1b1c1d1e1f206a746f74616c5f73697a651923286f7375706572626c6f636b5f73697a65"
    "1901f4717375706572626c6f636b5f7368613235365820222222222222222222222222222222222222222222222222222222"
    "222222222266666f726d6174016673657269616c0767657870697265731a657b7e00686272616e63686573a17171656d75"
    "2d61726d36342f737461626c65a465626f6172646a71656d752d61726d363466636f6d6d69745820000102030405060708"
    "090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6776657273696f6e65322e312e306974696d657374616d701a65"
    "53c9f06974696d657374616d701a6553f100")
SIG = unhex(
    "a266666f726d6174016a7369676e61747572657381a363616c676765643235353139636b65794821fe31dfa154a2616373"
    "696758409664833ad49b3a6aeb6be350f827d547706e0f0d23118c2634656992c9505e905185f70e081b5c4be0527763"
    "1bd44eee7121dbddc265b4c02eae2ee638f07b01")
T0 = 1700000000


def _ms():
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()
    return int(time.time() * 1000)


def _elapsed(start):
    if hasattr(time, "ticks_diff"):
        return time.ticks_diff(_ms(), start)
    return _ms() - start


def test_rfc8032_vectors_pure():
    for name, _seed, pub, msg, sig in VALID:
        assert ed25519.verify_pure(unhex(pub), unhex(msg), unhex(sig)), name
        assert not ed25519.verify_pure(unhex(pub), unhex(msg) + b"x", unhex(sig)), name


def test_invalid_vectors_refused():
    for name, pub, msg, sig in INVALID:
        assert not ed25519.verify_pure(unhex(pub), unhex(msg), unhex(sig)), name
        assert not ed25519.verify(unhex(pub), unhex(msg), unhex(sig)), name


def test_verify_time_within_budget():
    _, _, pub, msg, sig = VALID[2]
    pub, msg, sig = unhex(pub), unhex(msg), unhex(sig)
    ed25519.verify_pure(pub, msg, sig)  # builds the base-point table once
    n = 5
    start = _ms()
    for _ in range(n):
        assert ed25519.verify_pure(pub, msg, sig)
    per = _elapsed(start) / n
    print("ed25519 verify: %d ms per signature" % per)
    assert per < MAX_VERIFY_MS, per


def test_signature_file_bounds():
    raises(FormatError, signature.parse_blob, b"\xa0")
    raises(FormatError, signature.parse_blob, b"\x00" * 5000)
    raises(FormatError, signature.parse_blob, SIG[:-1])
    entries = signature.parse_blob(SIG)
    assert len(entries) == 1 and entries[0].key_id == signature.key_id(KEY)


def test_summary_round_trip():
    s = summary.parse_verified(SUMMARY, SIG, {"build.pub": KEY}, T0 + 5)
    assert s.serial == 7 and len(s.deltas) == 2 and not s.clock_behind
    entry = s.branch("qemu-arm64/stable")
    assert entry.version == "2.1.0" and entry.commit == bytes(range(32))
    assert s.find_delta(None, entry.commit).total_size == 50000
    # A clock at the epoch is raised to the summary's own time (documented policy).
    assert summary.parse_verified(SUMMARY, SIG, {"k": KEY}, 0).clock_behind


def test_summary_refusals():
    bad = bytearray(SUMMARY)
    bad[len(bad) // 2] ^= 1
    raises(TrustError, summary.parse_verified, bytes(bad), SIG, {"k": KEY}, T0)
    raises(TrustError, summary.parse_verified, SUMMARY, SIG, {}, T0)
    raises(TrustError, summary.parse_verified, SUMMARY, b"", {"k": KEY}, T0)
    other = unhex(VALID[1][2])
    raises(TrustError, summary.parse_verified, SUMMARY, SIG, {"other": other}, T0)
    err = raises(TrustError, summary.parse_verified, SUMMARY, SIG, {"k": KEY}, T0 + 31 * 86400)
    assert "expired" in str(err)


def test_freshness_state():
    s = summary.parse_verified(SUMMARY, SIG, {"k": KEY}, T0)
    state = {"format": 1}
    summary.check_not_older(s, "qemu-arm64/stable", state)
    summary.record_accepted(s, "qemu-arm64/stable", state)
    assert state[summary.STATE_SERIAL] == 7
    state[summary.STATE_BRANCHES]["qemu-arm64/stable"]["version"] = "2.10.0"
    err = raises(TrustError, summary.check_not_older, s, "qemu-arm64/stable", state)
    assert "Expected version >= 2.10.0, got 2.1.0" in str(err), str(err)
    state[summary.STATE_SERIAL] = 8
    raises(TrustError, summary.check_not_older, s, "qemu-arm64/stable", state)


def test_check_summary_with_durable_state():
    cfg = DeviceConfig(board="qemu-arm64", url="file:///srv/repo", branch="qemu-arm64/stable", keys=["build.pub"])
    root = Sysroot.create(scratch("trust-sysroot") + "/dev", cfg, keys={"build.pub": (KEY.hex() + "\n").encode()})
    s, entry = trust.check_summary(root, SUMMARY, SIG, now=T0 + 1)
    assert entry.version == "2.1.0"
    again = Sysroot.open(root.path)
    state = again.load_state()
    assert state[summary.STATE_SERIAL] == 7 and state[summary.STATE_BRANCHES]["qemu-arm64/stable"]["commit"] == entry.commit
    trust.check_summary(again, SUMMARY, SIG, now=T0 + 2)  # the same summary again
    state[summary.STATE_BRANCHES]["qemu-arm64/stable"]["version"] = "3.0"
    again.save_state(state)
    err = raises(TrustError, trust.check_summary, Sysroot.open(root.path), SUMMARY, SIG, None, T0 + 3)
    assert "Expected version >= 3.0, got 2.1.0" in str(err)
    empty = Sysroot.create(scratch("trust-sysroot") + "/nokeys", DeviceConfig(branch="qemu-arm64/stable"))
    raises(TrustError, trust.check_summary, empty, SUMMARY, SIG, None, T0)


def test_version_order():
    assert summary.compare_versions("1.10", "1.9") == 1
    assert summary.compare_versions("1.0", "1.0.0") == 0
    assert summary.compare_versions("1.0rc1", "1.0") == -1
    assert summary.compare_versions("2.0.3", "2.1.0") == -1


def test_cases_from_cpython():
    # Lines "summary-hex<TAB>sig-hex<TAB>key-hex or -<TAB>now<TAB>expected", expected = "ok SERIAL" or an error class.
    path = os.getenv("TRUST_CASES")
    if not path:
        return
    n = 0
    with open(path) as f:
        for line in f:
            data, sig, key, now, expected = line.rstrip("\n").split("\t")
            keys = {} if key == "-" else {"k": unhex(key)}
            try:
                s = summary.parse_verified(unhex(data), unhex(sig), keys, int(now))
                got = "ok %d" % s.serial
            except (TrustError, FormatError) as err:
                got = err.__class__.__name__
            assert got == expected, "case %d: got %s, expected %s" % (n, got, expected)
            n += 1
    print("cases from CPython: %d" % n)
    assert n > 0


run(globals())
