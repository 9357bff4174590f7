"""Signature files and the fail-closed verification policy (updater.signature)."""

import hashlib
import random

import cbor2
import pytest

from updater import cbor, signature
from updater.errors import ConfigError, FormatError, TrustError
from updater.host.keys import SigningKey, sign_blob

DATA = b"the exact bytes of a summary or commit"


def key(n):
    return SigningKey(hashlib.sha256(b"test key %d" % n).digest())


OLD, NEW, OTHER = key(1), key(2), key(3)


def test_key_id_is_first_8_bytes_of_sha256():
    assert signature.key_id(OLD.public) == hashlib.sha256(OLD.public).digest()[:8]
    assert OLD.key_id == signature.key_id(OLD.public)


def test_signed_message_layout():
    digest = hashlib.sha256(DATA).digest()
    msg = signature.signed_message(digest, "summary")
    assert msg == b"updater-signature-1\nsummary\n" + digest
    with pytest.raises(FormatError):
        signature.signed_message(digest, "Summary")
    with pytest.raises(FormatError):
        signature.signed_message(digest[:31], "summary")


def test_blob_round_trip_and_canonical_layout():
    blob = sign_blob([NEW, OLD], DATA, "summary")
    assert cbor2.loads(blob)["format"] == signature.SIGNATURE_FORMAT
    assert cbor.encode(cbor2.loads(blob)) == blob
    entries = signature.parse_blob(blob)
    assert [e.key_id for e in entries] == sorted([OLD.key_id, NEW.key_id])
    assert signature.signers(blob) == [signature.hexid(e.key_id) for e in entries]
    # merging a second signature by the same key replaces the first
    again = signature.merge_blob(blob, OLD.sign(b"other", "summary"))
    assert len(signature.parse_blob(again)) == 2


def test_verify_returns_the_trusted_key_name():
    blob = sign_blob([OLD], DATA, "summary")
    assert signature.verify({"build.pub": OLD.public}, DATA, blob, "summary", "summary") == "build.pub"
    digest = hashlib.sha256(DATA).digest()
    assert signature.verify_digest({"b": OLD.public}, digest, blob, "summary", "summary") == "b"


@pytest.mark.parametrize("trusted", [{}, None])
def test_no_trusted_key_fails_closed(trusted):
    blob = sign_blob([OLD], DATA, "summary")
    with pytest.raises(TrustError, match="no trusted keys are configured") as info:
        signature.verify(trusted, DATA, blob, "summary", "summary")
    assert info.value.hint and "[trust] keys" in info.value.hint


@pytest.mark.parametrize("blob", [None, b""])
def test_unsigned_is_refused(blob):
    with pytest.raises(TrustError, match="not signed"):
        signature.verify({"k": OLD.public}, DATA, blob, "summary", "summary")


def test_unknown_key_is_refused_and_named():
    blob = sign_blob([OTHER], DATA, "summary")
    with pytest.raises(TrustError, match="unknown keys %s" % OTHER.hexid()) as info:
        signature.verify({"build.pub": OLD.public}, DATA, blob, "summary", "summary")
    assert "build.pub (%s)" % OLD.hexid() in str(info.value)


def test_tampered_data_is_refused():
    blob = sign_blob([OLD], DATA, "summary")
    for i in range(len(DATA)):
        bad = bytearray(DATA)
        bad[i] ^= 0x20
        with pytest.raises(TrustError, match="does not match"):
            signature.verify({"k": OLD.public}, bytes(bad), blob, "summary", "summary")


def test_purpose_binds_the_signature():
    blob = sign_blob([OLD], DATA, "commit")
    with pytest.raises(TrustError, match="does not match"):
        signature.verify({"k": OLD.public}, DATA, blob, "summary", "summary")
    assert signature.verify({"k": OLD.public}, DATA, blob, "x", "commit") == "k"


def test_rotation_both_keys_sign_during_the_transition():
    blob = sign_blob([OLD, NEW], DATA, "summary")
    assert signature.verify({"old.pub": OLD.public}, DATA, blob, "s", "summary") == "old.pub"
    assert signature.verify({"new.pub": NEW.public}, DATA, blob, "s", "summary") == "new.pub"
    assert signature.verify({"a": OLD.public, "b": NEW.public}, DATA, blob, "s", "summary", threshold=2) == "a"
    # after the transition a device that trusts only the new key refuses old-only data
    with pytest.raises(TrustError, match="unknown keys"):
        signature.verify({"new.pub": NEW.public}, DATA, sign_blob([OLD], DATA, "summary"), "s", "summary")


def test_threshold():
    blob = sign_blob([OLD], DATA, "summary")
    with pytest.raises(TrustError, match="2 trusted signatures needed, got 1"):
        signature.verify({"a": OLD.public, "b": NEW.public}, DATA, blob, "s", "summary", threshold=2)
    # the same key listed twice counts once
    with pytest.raises(TrustError, match="2 trusted signatures needed"):
        signature.verify({"a": OLD.public, "a2": OLD.public}, DATA, blob, "s", "summary", threshold=2)


def test_a_bad_signature_by_a_trusted_key_is_refused_even_beside_a_good_one():
    good = OLD.sign(DATA, "summary")
    forged = signature.Entry(NEW.key_id, "ed25519", bytes(64))
    blob = signature.encode_blob([good, forged])
    with pytest.raises(TrustError, match="trusted key new.pub"):
        signature.verify({"old.pub": OLD.public, "new.pub": NEW.public}, DATA, blob, "s", "summary")


def test_entries_of_another_algorithm_are_skipped():
    good = cbor2.loads(sign_blob([OLD], DATA, "summary"))
    future = {"alg": "mldsa65", "key": b"\x00" * 8, "sig": b"\x01" * 100}
    blob = cbor.encode({"format": 1, "signatures": [future] + good["signatures"]})
    assert signature.verify({"k": OLD.public}, DATA, blob, "s", "summary") == "k"
    alone = cbor.encode({"format": 1, "signatures": [future]})
    with pytest.raises(TrustError, match="unknown keys"):
        signature.verify({"k": OLD.public}, DATA, alone, "s", "summary")


def test_bad_trusted_key_is_a_config_error():
    blob = sign_blob([OLD], DATA, "summary")
    with pytest.raises(ConfigError, match="small-order"):
        signature.verify({"evil": (1).to_bytes(32, "little")}, DATA, blob, "s", "summary")
    with pytest.raises(ConfigError):
        signature.verify({"short": b"\x01" * 31}, DATA, blob, "s", "summary")


def _entry(kid=None, alg="ed25519", sig=None):
    return {"alg": alg, "key": kid if kid is not None else OLD.key_id, "sig": sig if sig is not None else b"\x00" * 64}


MALFORMED = [
    ("not CBOR", b"\xff\xff"),
    ("a list, not a map", cbor.encode([1, 2])),
    ("wrong format", cbor.encode({"format": 2, "signatures": [_entry()]})),
    ("no signatures", cbor.encode({"format": 1, "signatures": []})),
    ("extra field", cbor.encode({"format": 1, "signatures": [_entry()], "x": 1})),
    ("short key id", cbor.encode({"format": 1, "signatures": [_entry(kid=b"\x01" * 7)]})),
    ("short signature", cbor.encode({"format": 1, "signatures": [_entry(sig=b"\x01" * 63)]})),
    ("entry missing sig", cbor.encode({"format": 1, "signatures": [{"alg": "ed25519", "key": OLD.key_id}]})),
    ("duplicate key", cbor.encode({"format": 1, "signatures": [_entry(), _entry()]})),
    ("unsorted keys", cbor.encode({"format": 1, "signatures": [_entry(kid=b"\x02" * 8), _entry(kid=b"\x01" * 8)]})),
    ("too many", cbor.encode({"format": 1, "signatures": [_entry(kid=bytes([i]) * 8) for i in range(17)]})),
    ("non-canonical map order", cbor2.dumps({"signatures": [_entry()], "format": 1})),
    ("deep nesting", b"\xa2" + cbor.encode("format") + b"\x01" + cbor.encode("signatures") + b"\x81" * 20 + b"\x00"),
    ("oversized", cbor.encode({"format": 1, "signatures": [_entry(alg="x", sig=b"\x00" * 1000)] * 1}) + b"\x00" * 4000),
    ("huge declared array", b"\xa2" + cbor.encode("format") + b"\x01" + cbor.encode("signatures") + b"\x9b" + b"\xff" * 8),
    ("trailing bytes", sign_blob([OLD], DATA, "summary") + b"\x00"),
]


@pytest.mark.parametrize("name,blob", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_signature_files_are_refused(name, blob):
    with pytest.raises(FormatError):
        signature.parse_blob(blob)
    with pytest.raises(TrustError, match="malformed signature file"):
        signature.verify({"k": OLD.public}, DATA, blob, "summary", "summary")


def test_every_bit_flip_of_a_signature_file_is_refused():
    blob = sign_blob([OLD], DATA, "summary")
    rng = random.Random(5)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 1 << rng.randrange(8)
        with pytest.raises(TrustError):
            signature.verify({"k": OLD.public}, DATA, bytes(bad), "summary", "summary")


def test_encode_blob_refuses_bad_input():
    with pytest.raises(FormatError):
        signature.encode_blob([])
    e = OLD.sign(DATA, "summary")
    with pytest.raises(FormatError, match="two signatures"):
        signature.encode_blob([e, e])
