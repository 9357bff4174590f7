"""Ed25519 signing keys on the build server (via ``cryptography``), and signing commits.

Key files (KEY_FORMAT 1, docs/signatures.md):

- ``KEY`` (private, mode 0600): text; lines starting with '#' are comments; one line
  ``ed25519-seed <64 hex digits>`` holds the 32-byte RFC 8032 secret seed (a bare line of 64 hex
  digits is accepted too, for seeds exported from other tools).
- ``KEY.pub``: the 32-byte public key as 64 lower-case hex digits and a newline: what a device
  lists in [trust] keys (updater.sysroot.parse_public_key reads it).
"""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .. import fs, signature, trust
from ..errors import ConfigError, FormatError, NotFoundError, StorageError, UpdaterError
from ..objects import to_hex

KEY_FORMAT = 1
SEED_TAG = "ed25519-seed"


class SigningKey:
    """A loaded private key: ``public`` (32 bytes), ``key_id`` (8 bytes), ``sign_*`` methods."""

    def __init__(self, seed, path=""):
        if len(seed) != 32:
            raise ConfigError("signing key %s: expected a 32-byte seed, got %d bytes" % (path or "(memory)", len(seed)))
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self.seed = bytes(seed)
        self.path = path
        self.public = self._key.public_key().public_bytes_raw()
        self.key_id = signature.key_id(self.public)

    def hexid(self):
        return signature.hexid(self.key_id)

    def sign_digest(self, digest, purpose):
        """A signature-file Entry over data whose SHA-256 is ``digest``."""
        sig = self._key.sign(signature.signed_message(digest, purpose))
        return signature.Entry(self.key_id, signature.ALG_ED25519, sig)

    def sign(self, data, purpose):
        import hashlib

        return self.sign_digest(hashlib.sha256(bytes(data)).digest(), purpose)


def private_key_text(seed):
    return ("# updater Ed25519 private key (format %d, docs/signatures.md): keep it secret\n%s %s\n"
            % (KEY_FORMAT, SEED_TAG, seed.hex()))


def parse_private_key(text, path="private key"):
    seed = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 2 and parts[0] == SEED_TAG:
            value = parts[1]
        elif len(parts) == 1:
            value = parts[0]
        else:
            raise ConfigError("reading %s: unexpected line '%s'" % (path, line[:40]),
                              "a key file holds one line 'ed25519-seed <64 hex digits>' (updater keygen)")
        if seed is not None or len(value) != 64:
            raise ConfigError("reading %s: expected exactly one 64-hex-digit seed" % path,
                              "create one with: updater keygen --out KEY")
        try:
            seed = bytes.fromhex(value)
        except ValueError:
            raise ConfigError("reading %s: the seed is not hexadecimal" % path)
    if seed is None:
        raise ConfigError("reading %s: no key in the file" % path, "create one with: updater keygen --out KEY")
    return SigningKey(seed, path)


def keygen(out, force=False):
    """Create a new key pair: ``out`` (private, 0600) and ``out``.pub; returns the SigningKey."""
    pub_path = out + ".pub"
    if not force:
        for path in (out, pub_path):
            if fs.lstat(path) is not None:
                raise ConfigError("creating key %s: %s already exists" % (out, path),
                                  "choose another --out, or pass --force to replace it (the old key is lost)")
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    key = SigningKey(seed, out)
    fs.write_atomic(out, private_key_text(seed).encode(), mode=0o600)
    fs.write_atomic(pub_path, (key.public.hex() + "\n").encode(), mode=0o644)
    return key


def load_key(path, warn=None):
    """Read a private key file; ``warn(text)`` is told when others may read it."""
    st = fs.lstat(path)
    if st is None:
        raise NotFoundError("reading signing key %s: no such file" % path, "create one with: updater keygen --out %s" % path)
    if st.mode & 0o077 and warn is not None:
        warn("warning: signing key %s is readable by other users (mode 0o%o); chmod 600 it" % (path, st.mode & 0o777))
    return parse_private_key(fs.read_bytes(path, 4096, "reading signing key").decode("utf-8", "replace"), path)


def sign_blob(keys, data, purpose, existing=None):
    """A signature file over ``data`` by every key in ``keys`` (merged into ``existing``)."""
    blob = existing
    for key in keys:
        blob = signature.merge_blob(blob, key.sign(data, purpose))
    return blob


def has_valid_signature(blob, key, commit_id):
    """True if ``blob`` holds a signature by ``key`` over the commit that verifies."""
    if not blob:
        return False
    try:
        signature.verify_digest({"k": key.public}, commit_id, blob, "commit", signature.PURPOSE_COMMIT)
        return True
    except UpdaterError:
        return False


def sign_commit(repo, commit_id, keys):
    """Add signatures by ``keys`` to the commit's .sig file (durably); returns the key IDs added."""
    repo.read_object(commit_id, "commit")  # exists and is intact: never sign a damaged commit
    blob = trust.read_commit_sig(repo, commit_id)
    try:
        current = signature.parse_blob(blob) if blob else []
    except FormatError as err:
        raise StorageError("signing commit %s: its signature file is damaged: %s" % (to_hex(commit_id), err),
                           "remove %s and sign again" % trust.commit_sig_path(repo, commit_id))
    added = []
    for key in keys:
        if has_valid_signature(blob, key, commit_id):
            continue
        current = [e for e in current if e.key_id != key.key_id] + [key.sign_digest(commit_id, signature.PURPOSE_COMMIT)]
        blob = signature.encode_blob(current)
        added.append(key.hexid())
    if added:
        trust.store_commit_sig(repo, commit_id, blob)
    return added
