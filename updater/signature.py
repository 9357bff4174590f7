"""Detached signatures: the signature-file format and the fail-closed verification policy.

SIGNATURE_FORMAT 1 (docs/signatures.md). A signature file (``REPO/summary.sig``,
``REPO/objects/XX/YYYY.sig``, ...) is canonical CBOR::

    {"format": 1, "signatures": [{"alg": "ed25519", "key": KEYID, "sig": SIG}, ...]}

- ``key``: the key ID, the first 8 bytes of SHA-256 of the 32-byte Ed25519 public key;
- ``alg``: "ed25519" (entries with another algorithm are skipped: room for a future one);
- ``sig``: 64 bytes, an Ed25519 signature of the *signed message* below;
- entries sorted by key ID, at most one per key, 1 to MAX_SIGNATURES of them.

Signed message (what Ed25519 signs; 66 + len(purpose) bytes)::

    b"updater-signature-1\\n" + PURPOSE + b"\\n" + SHA-256(data)

PURPOSE names what kind of thing is signed ("commit", "summary", "bundle", "data"), so a
signature of one kind can never be passed off as another. Signing the SHA-256 of the data
(which is also how objects are named) keeps SHA-512 inside Ed25519 to two blocks, lets a
large file be verified while streaming (``verify_digest``), and makes a commit signature a
signature of the commit ID.

Policy (``verify``): fail closed. No trusted key configured, no or empty signature file, a
malformed one, signatures only by unknown keys, or any signature by a trusted key that does
not verify: TrustError. ``threshold`` distinct trusted keys must verify (default 1).
The blob is untrusted input: it is size-limited and decoded with tight bounds.
"""

import hashlib

from . import cbor, ed25519
from .errors import ConfigError, FormatError, TrustError
from .objects import to_hex

SIGNATURE_FORMAT = 1
ALG_ED25519 = "ed25519"
KEY_ID_LEN = 8
SIG_LEN = 64
MAX_SIGNATURES = 16
MAX_SIG_BYTES = 4096
MESSAGE_PREFIX = b"updater-signature-1\n"
PURPOSE_COMMIT = "commit"
PURPOSE_SUMMARY = "summary"
PURPOSE_BUNDLE = "bundle"
PURPOSE_DATA = "data"

_HINT_KEYS = ("add the build server's public key (KEY.pub) to updater/keys/ and list it in [trust] keys "
              "of updater/config (updater init --trust KEY.pub does both)")


def key_id(public_key):
    """The 8-byte ID of a 32-byte Ed25519 public key: the first 8 bytes of its SHA-256."""
    return hashlib.sha256(bytes(public_key)).digest()[:KEY_ID_LEN]


hexid = to_hex  # a key ID in messages and reports: lower-case hex, like object IDs


def _check_purpose(purpose):
    if not isinstance(purpose, str) or not 1 <= len(purpose) <= 16:
        raise FormatError("signature purpose %r: expected 1 to 16 lower-case letters" % (purpose,))
    for ch in purpose:
        if not "a" <= ch <= "z":
            raise FormatError("signature purpose %r: expected 1 to 16 lower-case letters" % (purpose,))


def signed_message(digest, purpose):
    """The bytes Ed25519 signs for data whose SHA-256 is ``digest``."""
    _check_purpose(purpose)
    if len(digest) != 32:
        raise FormatError("signed message: expected a 32-byte SHA-256 digest, got %d bytes" % len(digest))
    return MESSAGE_PREFIX + purpose.encode() + b"\n" + bytes(digest)


# --- the blob --------------------------------------------------------------------------------
class Entry:
    __slots__ = ("key_id", "alg", "sig")

    def __init__(self, kid, alg, sig):
        self.key_id = kid
        self.alg = alg
        self.sig = sig


def encode_blob(entries):
    """Canonical signature-file bytes for ``entries`` (Entry objects; sorted here)."""
    if not entries:
        raise FormatError("writing a signature file: no signatures")
    if len(entries) > MAX_SIGNATURES:
        raise FormatError("writing a signature file: %d signatures, at most %d" % (len(entries), MAX_SIGNATURES))
    ordered = sorted(entries, key=lambda e: e.key_id)
    prev = None
    out = []
    for e in ordered:
        if len(e.key_id) != KEY_ID_LEN or len(e.sig) != SIG_LEN or e.alg != ALG_ED25519:
            raise FormatError("writing a signature file: malformed entry for key %s" % hexid(e.key_id))
        if e.key_id == prev:
            raise FormatError("writing a signature file: two signatures by key %s" % hexid(e.key_id))
        prev = e.key_id
        out.append({"alg": e.alg, "key": bytes(e.key_id), "sig": bytes(e.sig)})
    return cbor.encode({"format": SIGNATURE_FORMAT, "signatures": out})


def _map_of(value, names):
    """True if ``value`` is a map with exactly the text keys ``names``."""
    if not isinstance(value, dict) or len(value) != len(names):
        return False
    for name in names:
        if name not in value:
            return False
    return True


def parse_blob(blob, what="signature file"):
    """The entries of a signature file; FormatError on any deviation from the format."""
    if len(blob) > MAX_SIG_BYTES:
        raise FormatError("%s: %d bytes, at most %d" % (what, len(blob), MAX_SIG_BYTES))
    value = cbor.decode(blob, what, max_depth=3, max_items=3 + 7 * MAX_SIGNATURES)
    if not _map_of(value, ("format", "signatures")):
        raise FormatError("%s: expected a map with 'format' and 'signatures'" % what)
    if value["format"] != SIGNATURE_FORMAT:
        raise FormatError("%s: format %r, expected %d" % (what, value["format"], SIGNATURE_FORMAT),
                          "use an updater release that reads this signature format")
    items = value["signatures"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_SIGNATURES:
        raise FormatError("%s: expected 1 to %d signatures" % (what, MAX_SIGNATURES))
    out = []
    prev = None
    for item in items:
        if not _map_of(item, ("alg", "key", "sig")):
            raise FormatError("%s: a signature entry is not a map of alg, key, sig" % what)
        kid, alg, sig = item["key"], item["alg"], item["sig"]
        if not isinstance(kid, bytes) or len(kid) != KEY_ID_LEN:
            raise FormatError("%s: a key ID must be %d bytes" % (what, KEY_ID_LEN))
        if not isinstance(alg, str) or not 1 <= len(alg) <= 16 or not isinstance(sig, bytes) or len(sig) > 1024:
            raise FormatError("%s: malformed signature entry for key %s" % (what, hexid(kid)))
        if alg == ALG_ED25519 and len(sig) != SIG_LEN:
            raise FormatError("%s: an ed25519 signature must be %d bytes, got %d" % (what, SIG_LEN, len(sig)))
        if prev is not None and kid <= prev:
            raise FormatError("%s: entries not sorted by key ID, or a key listed twice" % what)
        prev = kid
        out.append(Entry(kid, alg, sig))
    return out


def merge_blob(blob, entry):
    """A signature file with ``entry`` added (replacing an older one by the same key)."""
    entries = [] if not blob else [e for e in parse_blob(blob) if e.key_id != entry.key_id]
    entries.append(entry)
    return encode_blob(entries)


def signers(blob):
    """Hex key IDs of the signatures in a blob ([] if there is none or it is malformed)."""
    try:
        return [hexid(e.key_id) for e in parse_blob(blob)] if blob else []
    except FormatError:
        return []


# --- verification ----------------------------------------------------------------------------
def _keyring(trusted, what):
    if not trusted:
        raise TrustError("verifying %s: no trusted keys are configured, so nothing can be accepted" % what,
                         _HINT_KEYS)
    ring = {}
    for name in sorted(trusted):
        pub = trusted[name]
        problem = ed25519.public_key_problem(pub) if isinstance(pub, bytes) else "not bytes"
        if problem:
            raise ConfigError("trusted key %s: %s" % (name, problem), "replace it with the build server's KEY.pub")
        kid = key_id(pub)
        if kid not in ring:
            ring[kid] = (name, pub)
    return ring


def verify_digest(trusted, digest, sig_blob, what, purpose=PURPOSE_DATA, threshold=1):
    """Check ``sig_blob`` over data whose SHA-256 is ``digest``; returns the verifying key's name
    (the first in sorted order when several verify).

    ``trusted``: {name: 32-byte public key}. Raises TrustError (see the module docstring).
    """
    ring = _keyring(trusted, what)
    if not sig_blob:
        raise TrustError("verifying %s: it is not signed (no or empty signature file)" % what,
                         "sign and publish it on the build server: updater --repo R publish --key KEY")
    try:
        entries = parse_blob(sig_blob, "signature of " + what)
    except FormatError as err:
        raise TrustError("verifying %s: malformed signature file: %s" % (what, err),
                         "fetch it again; if it persists, re-publish on the build server")
    message = signed_message(digest, purpose)
    good = []
    for e in entries:
        known = ring.get(e.key_id)
        if known is None or e.alg != ALG_ED25519:
            continue
        if not ed25519.verify(known[1], message, e.sig):
            raise TrustError("verifying %s: the %s signature by trusted key %s (%s) does not match"
                             % (what, purpose, known[0], hexid(e.key_id)),
                             "the data was altered or damaged on the way: fetch it again from a trusted server")
        good.append(known[0])
    if not good:
        raise TrustError("verifying %s: signed only by unknown keys %s; trusted: %s"
                         % (what, ", ".join(hexid(e.key_id) for e in entries),
                            ", ".join("%s (%s)" % (ring[k][0], hexid(k)) for k in sorted(ring))),
                         "publish with a trusted key, or add the signer's public key to [trust] keys")
    if len(good) < threshold:
        raise TrustError("verifying %s: %d trusted signatures needed, got %d (%s)"
                         % (what, threshold, len(good), ", ".join(good)),
                         "sign with more of the trusted keys")
    good.sort()
    return good[0]


def verify(trusted, data, sig_blob, what, purpose=PURPOSE_DATA, threshold=1):
    """Check ``sig_blob`` over the exact bytes ``data``; returns the first verifying key name."""
    return verify_digest(trusted, hashlib.sha256(bytes(data)).digest(), sig_blob, what, purpose, threshold)
