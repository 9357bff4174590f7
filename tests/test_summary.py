"""The signed summary: format, authentication before decoding, expiry and clock policy, replay
floors, version order; the same decisions under MicroPython on bytes made here."""

import hashlib
import os
import subprocess
import sys

import cbor2
import pytest

from updater import cbor, objects, summary
from updater.errors import FormatError, NotFoundError, TrustError
from updater.host.keys import SigningKey, sign_blob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = SigningKey(hashlib.sha256(b"summary test key").digest())
OTHER = SigningKey(hashlib.sha256(b"someone else").digest())
TRUSTED = {"build.pub": KEY.public}
T0 = 1_750_000_000
DAY = 86400
BRANCH = "qemu-arm64/stable"
C1, C2, C3 = (hashlib.sha256(b"commit %d" % i).digest() for i in (1, 2, 3))


def make(serial=5, timestamp=T0, expires=T0 + 30 * DAY, version="2.1.0", commit=C2, ctime=T0 - 100,
         deltas=None, board="qemu-arm64", extra_branches=()):
    branches = [summary.BranchEntry(BRANCH, commit, version, ctime, board)] + list(extra_branches)
    if deltas is None:
        deltas = [summary.DeltaEntry(C1, C2, b"\x11" * 32, 400, 9000), summary.DeltaEntry(None, C2, b"\x22" * 32, 800, 90000)]
    return summary.encode(serial, timestamp, expires, branches, deltas)


def signed(data, keys=(KEY,)):
    return data, sign_blob(list(keys), data, "summary")


def test_round_trip_and_field_table():
    data, sig = signed(make())
    raw = cbor2.loads(data)
    assert sorted(raw) == ["branches", "deltas", "expires", "format", "serial", "timestamp"]
    assert sorted(raw["branches"][BRANCH]) == ["board", "commit", "timestamp", "version"]
    assert sorted(raw["deltas"][0]) == ["from", "superblock_sha256", "superblock_size", "to", "total_size"]
    assert raw["format"] == summary.SUMMARY_FORMAT
    assert cbor2.dumps(raw, canonical=True) == data
    s = summary.parse_verified(data, sig, TRUSTED, T0 + 10)
    assert (s.serial, s.timestamp, s.expires) == (5, T0, T0 + 30 * DAY)
    e = s.branch(BRANCH)
    assert (e.commit, e.version, e.timestamp, e.board) == (C2, "2.1.0", T0 - 100, "qemu-arm64")
    assert s.find_delta(C1, C2).superblock_size == 400
    assert s.find_delta(None, C2).name() == "full-" + objects.to_hex(C2)
    assert s.find_delta(C3, C2) is None
    assert not s.clock_behind
    assert s.verified_by == "build.pub" and summary.decode_unverified(data).verified_by is None
    assert summary.signature_name(data) == "summaries/%s.sig" % hashlib.sha256(data).hexdigest()


def test_every_tampered_byte_is_refused_before_decoding():
    data, sig = signed(make())
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(TrustError):
            summary.parse_verified(bytes(bad), sig, TRUSTED, T0)


def test_refusals():
    data, sig = signed(make())
    with pytest.raises(TrustError, match="unknown keys"):
        summary.parse_verified(data, sign_blob([OTHER], data, "summary"), TRUSTED, T0)
    with pytest.raises(TrustError, match="not signed"):
        summary.parse_verified(data, b"", TRUSTED, T0)
    with pytest.raises(TrustError, match="no trusted keys"):
        summary.parse_verified(data, sig, {}, T0)
    with pytest.raises(TrustError, match="does not match"):  # a commit signature is not a summary signature
        summary.parse_verified(data, sign_blob([KEY], data, "commit"), TRUSTED, T0)
    with pytest.raises(TrustError, match="more than the limit"):
        summary.parse_verified(b"\x00" * (summary.MAX_SUMMARY_BYTES + 1), sig, TRUSTED, T0)


def test_a_signed_but_malformed_summary_is_a_format_error():
    data = cbor.encode({"format": 1, "serial": 1})
    with pytest.raises(FormatError, match="expected a map of"):
        summary.parse_verified(data, sign_blob([KEY], data, "summary"), TRUSTED, T0)


def test_expiry_and_clock_policy():
    data, sig = signed(make(expires=T0 + DAY))
    assert summary.parse_verified(data, sig, TRUSTED, T0 + DAY - 1).serial == 5
    with pytest.raises(TrustError, match="expired at") as info:
        summary.parse_verified(data, sig, TRUSTED, T0 + DAY)
    assert "re-published" in info.value.hint
    # a clock that is unset (epoch), unknown, or behind the publisher is raised to the summary's time
    for now in (0, None, T0 - 5 * 365 * DAY):
        s = summary.parse_verified(data, sig, TRUSTED, now)
        assert s.clock_behind


def _bad(**fields):
    value = cbor2.loads(make())
    value.update(fields)
    return cbor2.dumps(value, canonical=True)


def _bad_branch(**fields):
    value = cbor2.loads(make())
    value["branches"][BRANCH].update(fields)
    return cbor2.dumps(value, canonical=True)


def _bad_delta(**fields):
    value = cbor2.loads(make())
    value["deltas"][0].update(fields)
    return cbor2.dumps(value, canonical=True)


MALFORMED = [
    ("future format", _bad(format=2)),
    ("serial 0", _bad(serial=0)),
    ("expires before timestamp", _bad(expires=T0 - 1)),
    ("negative timestamp", _bad(timestamp=-1)),
    ("bool serial", _bad(serial=True)),
    ("extra field", _bad(mirror="x")),
    ("branches a list", _bad(branches=[])),
    ("branch name with ..", _bad(branches={"../x": cbor2.loads(make())["branches"][BRANCH]})),
    ("short commit", _bad_branch(commit=b"\x01" * 31)),
    ("version not text", _bad_branch(version=2)),
    ("branch extra field", _bad_branch(url="x")),
    ("delta from == to", _bad_delta(**{"from": C2})),
    ("superblock larger than total", _bad_delta(superblock_size=10 ** 6)),
    ("zero total", _bad_delta(total_size=0)),
    ("deltas listed twice", _bad(deltas=[cbor2.loads(make())["deltas"][0]] * 2)),
    ("deltas out of order", _bad(deltas=list(reversed(cbor2.loads(make())["deltas"])))),
    ("trailing byte", make() + b"\x00"),
]


@pytest.mark.parametrize("name,data", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_summaries(name, data):
    with pytest.raises(FormatError):
        summary.decode_unverified(data)
    with pytest.raises(FormatError):  # authenticated, and still refused
        summary.parse_verified(data, sign_blob([KEY], data, "summary"), TRUSTED, T0)


def test_encode_refuses_what_decode_would():
    with pytest.raises(FormatError):
        make(expires=T0)
    with pytest.raises(FormatError):
        make(deltas=[summary.DeltaEntry(C2, C2, b"\x00" * 32, 1, 1)])


# --- freshness -------------------------------------------------------------------------------
def accepted(state, **kw):
    data, sig = signed(make(**kw))
    s = summary.parse_verified(data, sig, TRUSTED, T0)
    summary.check_not_older(s, BRANCH, state)
    summary.record_accepted(s, BRANCH, state)
    return s


def test_floors_are_recorded_and_enforced():
    state = {"format": 1}
    accepted(state)
    assert state[summary.STATE_SERIAL] == 5
    assert state[summary.STATE_TIMESTAMP] == T0
    assert state[summary.STATE_BRANCHES][BRANCH] == {"version": "2.1.0", "timestamp": T0 - 100, "commit": C2}
    accepted(state)  # the same summary again is fine
    state = cbor.decode(cbor.encode(state))  # the floors survive the state file's encoding
    older_serial = summary.decode_unverified(make(serial=4, timestamp=T0 + 10))
    with pytest.raises(TrustError, match="Expected serial >= 5, got 4") as info:
        summary.check_not_older(older_serial, BRANCH, state)
    assert "replay" in info.value.hint
    older_time = summary.decode_unverified(make(serial=6, timestamp=T0 - 1))
    with pytest.raises(TrustError, match="published at or after"):
        summary.check_not_older(older_time, BRANCH, state)
    lower = summary.decode_unverified(make(serial=6, timestamp=T0 + 1, version="2.0.3", commit=C3))
    with pytest.raises(TrustError, match=r"Expected version >= 2\.1\.0, got 2\.0\.3"):
        summary.check_not_older(lower, BRANCH, state)
    older_commit = summary.decode_unverified(make(serial=6, timestamp=T0 + 1, ctime=T0 - 200, commit=C3))
    with pytest.raises(TrustError, match="commit made at or after"):
        summary.check_not_older(older_commit, BRANCH, state)
    newer = summary.decode_unverified(make(serial=6, timestamp=T0 + 1, version="2.10.0", commit=C3, ctime=T0))
    assert summary.check_not_older(newer, BRANCH, state).commit == C3


def test_record_never_lowers_and_branches_are_separate():
    state = {}
    accepted(state, version="3.0")
    s = summary.decode_unverified(make(version="1.0", serial=1, timestamp=T0 - 50, ctime=0))
    summary.record_accepted(s, BRANCH, state)
    assert state[summary.STATE_SERIAL] == 5 and state[summary.STATE_TIMESTAMP] == T0
    assert state[summary.STATE_BRANCHES][BRANCH]["version"] == "3.0"
    assert state[summary.STATE_BRANCHES][BRANCH]["timestamp"] == T0 - 100
    other = summary.BranchEntry("qemu-arm64/testing", C1, "0.1", 1, "qemu-arm64")
    s = summary.decode_unverified(make(serial=9, timestamp=T0 + 9, version="3.1", extra_branches=[other]))
    summary.check_not_older(s, "qemu-arm64/testing", state)  # no floor for that branch yet


def test_missing_branch():
    s = summary.decode_unverified(make())
    with pytest.raises(NotFoundError, match="does not publish it"):
        summary.check_not_older(s, "qemu-arm/stable", {})


VERSIONS = [
    ("1.10", "1.9", 1), ("1.9", "1.10", -1), ("2.1.0", "2.1.0", 0), ("1.0", "1.0.0", 0),
    ("1.0.1", "1.0", 1), ("1.0rc1", "1.0", -1), ("1.0.rc1", "1.0.1", -1), ("1.0rc2", "1.0rc10", -1),
    ("01.2", "1.2", 0), ("2024.06.1", "2024.6", 1), ("", "0.1", -1), ("", "", 0), ("v2", "v10", -1),
    ("1.0-beta", "1.0-alpha", 1), ("1.0-1", "1.0", 1), ("10", "9.99", 1),
    ("1.0+build5", "1.0", -1),  # any word suffix reads as a pre-release (documented rule)
]


@pytest.mark.parametrize("a,b,want", VERSIONS)
def test_compare_versions(a, b, want):
    assert summary.compare_versions(a, b) == want
    assert summary.compare_versions(b, a) == -want


class FakeCommit:
    def __init__(self, branch=BRANCH, board="qemu-arm64", version="2.1.0", timestamp=T0 - 100):
        self.branch, self.board, self.version, self.timestamp = branch, board, version, timestamp


def test_check_commit_binds_branch_board_and_version():
    s = summary.decode_unverified(make())
    summary.check_commit(s, BRANCH, C2, FakeCommit(), "qemu-arm64")
    with pytest.raises(TrustError, match="the summary names commit"):
        summary.check_commit(s, BRANCH, C3, FakeCommit(), "qemu-arm64")
    with pytest.raises(TrustError, match="made for branch"):
        summary.check_commit(s, BRANCH, C2, FakeCommit(branch="qemu-arm64/testing"), "qemu-arm64")
    with pytest.raises(TrustError, match="for board beaglebone-black, this device is qemu-arm64"):
        summary.check_commit(s, BRANCH, C2, FakeCommit(board="beaglebone-black"), "qemu-arm64")
    with pytest.raises(TrustError, match="differ from the summary"):
        summary.check_commit(s, BRANCH, C2, FakeCommit(version="2.1.1"), "qemu-arm64")


# --- the same decisions under MicroPython ------------------------------------------------------
def trust_cases():
    """(summary, sig, key or None, now) covering acceptance and each refusal."""
    out = []
    for serial in range(1, 6):
        data, sig = signed(make(serial=serial, timestamp=T0 + serial, expires=T0 + serial + DAY))
        out.append((data, sig, KEY.public, T0))
        out.append((data, sig, KEY.public, 0))
        out.append((data, sig, KEY.public, T0 + serial + DAY))  # expired
        bad = bytearray(data)
        bad[serial * 7] ^= 4
        out.append((bytes(bad), sig, KEY.public, T0))
        out.append((data, sig, OTHER.public, T0))
        out.append((data, sig, None, T0))
        out.append((data, b"", KEY.public, T0))
        out.append((data, sig[:-3], KEY.public, T0))
    both = sign_blob([KEY, OTHER], make(), "summary")
    out.append((make(), both, OTHER.public, T0))
    junk = cbor.encode({"format": 1})
    out.append((junk, sign_blob([KEY], junk, "summary"), KEY.public, T0))
    return out


@pytest.mark.micropython
def test_micropython_decides_like_cpython(tmp_path):
    path = tmp_path / "trust-cases.tsv"
    lines = []
    for data, sig, key, now in trust_cases():
        try:
            s = summary.parse_verified(data, sig, {"k": key} if key else {}, now)
            expected = "ok %d" % s.serial
        except (TrustError, FormatError) as err:
            expected = err.__class__.__name__
        lines.append("\t".join([data.hex(), sig.hex(), key.hex() if key else "-", str(now), expected]))
    assert sum(1 for x in lines if x.endswith("TrustError")) > 20
    path.write_text("\n".join(lines) + "\n")
    mpy = os.path.join(os.path.dirname(sys.executable), "micropython")
    env = dict(os.environ, MICROPYPATH=ROOT + ":" + os.path.join(ROOT, "tests", "mpy"),
               TRUST_CASES=str(path), MPYTEST_TMP=str(tmp_path))
    proc = subprocess.run([mpy, "-X", "heapsize=512K", os.path.join(ROOT, "tests", "mpy", "test_ed25519_mpy.py")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   test_cases_from_cpython" in proc.stdout
    assert "cases from CPython: %d" % len(lines) in proc.stdout
