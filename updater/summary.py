"""The signed summary a repository publishes, and the freshness policy a device applies to it.

SUMMARY_FORMAT 1; the field table is in docs/summary-format.md. ``REPO/summary`` is canonical
CBOR::

    {"format": 1, "serial": N, "timestamp": T, "expires": E,
     "branches": {NAME: {"commit": ID, "version": V, "timestamp": CT, "board": B}},
     "deltas": [{"from": ID | null, "to": ID, "superblock_sha256": H,
                 "superblock_size": S, "total_size": Z}, ...]}

signed by ``REPO/summary.sig`` (updater.signature, purpose "summary"). The same signature is
also published as ``REPO/summaries/<SHA-256 of summary, hex>.sig`` *before* the summary is
replaced, so a client that fetches ``summary`` and then ``signature_name(summary_bytes)``
always gets a matching pair even while a publish runs (see docs/summary-format.md).

Pure: bytes in, objects out; no file or network I/O. The caller loads and saves the device
state map (Sysroot.load_state / save_state); this module reads and updates the keys below.

Device state keys (all written only by ``record_accepted``, only ever raised):
- ``trust_serial``:    highest summary serial accepted;
- ``trust_timestamp``: highest summary timestamp accepted (seconds);
- ``trust_branches``:  {branch: {"version": V, "timestamp": CT, "commit": ID}} of the newest
  branch head accepted (the version floor and commit-time floor of that branch).

Clock policy: ``now`` is the device clock in seconds, or None when it is unknown. A clock that
reads earlier than the summary's own (signed) timestamp - unset, at the epoch after a power
loss, or merely behind - is raised to that timestamp, so the summary is accepted unless its
signed validity window is empty. Such a device is still protected against replays of older
summaries by the persisted floors, but not against an indefinite freeze on the newest one:
only a clock (RTC, NTP, GPS) can detect that. A clock ahead of the timestamp is trusted.
"""

import time

from . import cbor, objects, signature
from .errors import FormatError, NotFoundError, TrustError

SUMMARY_FORMAT = 1
MAX_SUMMARY_BYTES = 1024 * 1024
MAX_BRANCHES = 1024
MAX_DELTAS = 16384
MAX_TEXT = 4096
MAX_SIZE = 1 << 53
STATE_SERIAL = "trust_serial"
STATE_TIMESTAMP = "trust_timestamp"
STATE_BRANCHES = "trust_branches"

_FIELDS = ("format", "serial", "timestamp", "expires", "branches", "deltas")
_BRANCH_FIELDS = ("commit", "version", "timestamp", "board")
_DELTA_FIELDS = ("from", "to", "superblock_sha256", "superblock_size", "total_size")


def iso(ts):
    try:
        t = time.gmtime(ts)
        return "%04d-%02d-%02d %02d:%02d:%02d UTC" % (t[0], t[1], t[2], t[3], t[4], t[5])
    except (OverflowError, ValueError, OSError):
        return "%d s" % ts


class BranchEntry:
    __slots__ = ("name", "commit", "version", "timestamp", "board")

    def __init__(self, name, commit, version, timestamp, board):
        self.name = name
        self.commit = commit
        self.version = version
        self.timestamp = timestamp
        self.board = board


class DeltaEntry:
    """One static delta: REPO/deltas/<FROMHEX|full>-<TOHEX>/ (``from_commit`` None = full)."""

    __slots__ = ("from_commit", "to", "superblock_sha256", "superblock_size", "total_size")

    def __init__(self, from_commit, to, superblock_sha256, superblock_size, total_size):
        self.from_commit = from_commit
        self.to = to
        self.superblock_sha256 = superblock_sha256
        self.superblock_size = superblock_size
        self.total_size = total_size

    def name(self):
        return "%s-%s" % ("full" if self.from_commit is None else objects.to_hex(self.from_commit),
                          objects.to_hex(self.to))


class Summary:
    __slots__ = ("serial", "timestamp", "expires", "branches", "deltas", "clock_behind", "verified_by")

    def __init__(self, serial, timestamp, expires, branches, deltas):
        self.serial = serial
        self.timestamp = timestamp
        self.expires = expires
        self.branches = branches
        self.deltas = deltas
        self.clock_behind = False
        self.verified_by = None  # the trusted key's name, set by parse_verified

    def branch(self, name):
        entry = self.branches.get(name)
        if entry is None:
            raise NotFoundError("looking up branch %s in the summary: the repository does not publish it "
                                "(it has %s)" % (name, ", ".join(sorted(self.branches)) or "no branches"),
                                "check [remote] branch in the device configuration")
        return entry

    def find_delta(self, from_commit, to):
        """The delta from ``from_commit`` (None: a full delta) to ``to``, or None."""
        for d in self.deltas:
            if d.from_commit == from_commit and d.to == to:
                return d
        return None


# --- writing (host side uses this too; pure) ----------------------------------------------------
def _delta_order(d):
    return (d.to, b"" if d.from_commit is None else d.from_commit)


def encode(serial, timestamp, expires, branches, deltas):
    """Canonical summary bytes. ``branches``: [BranchEntry]; ``deltas``: [DeltaEntry]."""
    value = {
        "format": SUMMARY_FORMAT, "serial": serial, "timestamp": timestamp, "expires": expires,
        "branches": dict((b.name, {"commit": b.commit, "version": b.version, "timestamp": b.timestamp,
                                   "board": b.board}) for b in branches),
        "deltas": [{"from": d.from_commit, "to": d.to, "superblock_sha256": d.superblock_sha256,
                    "superblock_size": d.superblock_size, "total_size": d.total_size}
                   for d in sorted(deltas, key=_delta_order)],
    }
    data = cbor.encode(value)
    decode_unverified(data)  # the writer obeys every rule the reader checks
    return data


# --- reading ---------------------------------------------------------------------------------
def _map_of(value, names, what):
    if not isinstance(value, dict) or len(value) != len(names):
        raise FormatError("%s: expected a map of %s" % (what, ", ".join(names)))
    for name in names:
        if name not in value:
            raise FormatError("%s: missing field '%s'" % (what, name))


def _int(value, what, minimum=0, maximum=MAX_SIZE):
    if not isinstance(value, int) or value is True or value is False or not minimum <= value <= maximum:
        raise FormatError("%s: expected a whole number in [%d, %d], got %r" % (what, minimum, maximum, value))
    return value


def _oid(value, what, nullable=False):
    if value is None and nullable:
        return None
    if not isinstance(value, bytes) or len(value) != objects.ID_LEN:
        raise FormatError("%s: expected a %d-byte checksum" % (what, objects.ID_LEN))
    return value


def _text(value, what):
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise FormatError("%s: expected text of at most %d characters" % (what, MAX_TEXT))
    return value


def decode_unverified(data, what="summary"):
    """Parse and validate summary bytes WITHOUT checking a signature (host tools, tests).

    Devices call ``parse_verified``, which authenticates the bytes first.
    """
    if len(data) > MAX_SUMMARY_BYTES:
        raise FormatError("%s: %d bytes, at most %d" % (what, len(data), MAX_SUMMARY_BYTES))
    value = cbor.decode(data, what, max_depth=4, max_items=8 + 12 * MAX_BRANCHES + 12 * MAX_DELTAS)
    _map_of(value, _FIELDS, what)
    if value["format"] != SUMMARY_FORMAT:
        raise FormatError("%s: format %r, expected %d" % (what, value["format"], SUMMARY_FORMAT),
                          "use an updater release that reads summary format %r" % (value["format"],))
    serial = _int(value["serial"], what + " serial", 1)
    timestamp = _int(value["timestamp"], what + " timestamp")
    expires = _int(value["expires"], what + " expiry")
    if expires <= timestamp:
        raise FormatError("%s: expires (%d) is not after its timestamp (%d)" % (what, expires, timestamp))
    raw = value["branches"]
    if not isinstance(raw, dict) or len(raw) > MAX_BRANCHES:
        raise FormatError("%s: 'branches' must be a map of at most %d branches" % (what, MAX_BRANCHES))
    branches = {}
    for name in raw:
        if not isinstance(name, str):
            raise FormatError("%s: a branch name is not text" % what)
        objects.check_branch(name)
        entry = raw[name]
        where = "%s branch %s" % (what, name)
        _map_of(entry, _BRANCH_FIELDS, where)
        branches[name] = BranchEntry(name, _oid(entry["commit"], where + " commit"),
                                     _text(entry["version"], where + " version"),
                                     _int(entry["timestamp"], where + " timestamp"),
                                     _text(entry["board"], where + " board"))
    items = value["deltas"]
    if not isinstance(items, list) or len(items) > MAX_DELTAS:
        raise FormatError("%s: 'deltas' must be a list of at most %d deltas" % (what, MAX_DELTAS))
    deltas = []
    prev = None
    for item in items:
        where = "%s delta %d" % (what, len(deltas))
        _map_of(item, _DELTA_FIELDS, where)
        d = DeltaEntry(_oid(item["from"], where + " from", True), _oid(item["to"], where + " to"),
                       _oid(item["superblock_sha256"], where + " superblock_sha256"),
                       _int(item["superblock_size"], where + " superblock_size", 1),
                       _int(item["total_size"], where + " total_size", 1))
        if d.superblock_size > d.total_size:
            raise FormatError("%s: superblock_size %d exceeds total_size %d" % (where, d.superblock_size, d.total_size))
        if d.from_commit == d.to:
            raise FormatError("%s: 'from' and 'to' are the same commit" % where)
        key = _delta_order(d)
        if prev is not None and key <= prev:
            raise FormatError("%s: deltas out of order (by to, from) or listed twice" % where)
        prev = key
        deltas.append(d)
    return Summary(serial, timestamp, expires, branches, deltas)


def signature_name(summary_bytes):
    """Path (relative to the repository) of the signature matching these exact summary bytes."""
    return "summaries/%s.sig" % objects.to_hex(objects.sha256(summary_bytes))


def parse_verified(summary_bytes, sig_bytes, trusted_keys, now, what="summary"):
    """Authenticate, then decode and check a summary; returns a Summary (``verified_by`` set).

    1. size bound, then the signature over the EXACT bytes (updater.signature.verify, purpose
       "summary"; fails closed: no trusted key, unsigned, unknown key, bad signature);
    2. only then bounded decoding and validation (FormatError);
    3. expiry with the clock policy of the module docstring (TrustError when expired).
    """
    if len(summary_bytes) > MAX_SUMMARY_BYTES:
        raise TrustError("verifying %s: %d bytes, more than the limit of %d" % (what, len(summary_bytes), MAX_SUMMARY_BYTES),
                         "the server sent something that is not a summary; check [remote] url")
    signer = signature.verify(trusted_keys, summary_bytes, sig_bytes, what, signature.PURPOSE_SUMMARY)
    s = decode_unverified(summary_bytes, what)
    s.verified_by = signer
    effective = now
    if now is None or now < s.timestamp:
        effective = s.timestamp
        s.clock_behind = True
    if effective >= s.expires:
        raise TrustError("checking %s: it expired at %s (now %s); serial %d, published %s"
                         % (what, iso(s.expires), iso(effective), s.serial, iso(s.timestamp)),
                         "the repository must be re-published (updater publish) to renew it; if it was, "
                         "check the device clock and that [remote] url is the real server")
    return s


# --- versions --------------------------------------------------------------------------------
def version_tokens(version):
    """Numbers (int) and ASCII words (str) of a version; any other character only separates them."""
    out = []
    cur = ""
    kind = None
    for ch in version:
        if "0" <= ch <= "9":
            k = "n"
        elif "a" <= ch <= "z" or "A" <= ch <= "Z":
            k = "w"
        else:
            k = None
        if k != kind and cur:
            out.append(int(cur) if kind == "n" else cur)
            cur = ""
        kind = k
        if k is not None:
            cur += ch
    if cur:
        out.append(int(cur) if kind == "n" else cur)
    return out


def compare_versions(a, b):
    """-1, 0 or 1 as version ``a`` is lower than, equal to or higher than ``b``.

    Both are split into numbers and words (``version_tokens``) and compared token by token:
    numbers as numbers (1.10 > 1.9, 01 = 1), words by their characters, a number above a word
    (1.0.1 > 1.0.rc1). Where one version has run out of tokens, a number on the other side is
    compared with 0 (1.0 = 1.0.0 < 1.0.1) and a word makes the other side higher (1.0rc1 < 1.0).
    """
    ta = version_tokens(a)
    tb = version_tokens(b)
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x is None:
            x = 0 if isinstance(y, int) else None
        if y is None:
            y = 0 if isinstance(x, int) else None
        if x == y:
            continue
        if x is None:
            return 1
        if y is None:
            return -1
        xn = isinstance(x, int)
        yn = isinstance(y, int)
        if xn != yn:
            return 1 if xn else -1
        return -1 if x < y else 1
    return 0


# --- freshness -------------------------------------------------------------------------------
_REPLAY_HINT = ("the server offers older data than this device already accepted: a replay, or a "
                "repository restored from an old backup; publish a newer build (updater publish)")


def check_not_older(summary, branch, state):
    """Refuse a summary or branch head older than what ``state`` (the device state map) recorded.

    Returns the BranchEntry of ``branch``. TrustError on a lower serial or timestamp, a lower
    branch version (``compare_versions``) or an older branch commit time.
    """
    serial = state.get(STATE_SERIAL, 0)
    if summary.serial < serial:
        raise TrustError("checking summary: Expected serial >= %d, got %d (published %s)"
                         % (serial, summary.serial, iso(summary.timestamp)), _REPLAY_HINT)
    stamp = state.get(STATE_TIMESTAMP, 0)
    if summary.timestamp < stamp:
        raise TrustError("checking summary: Expected a summary published at or after %s, got one from %s"
                         % (iso(stamp), iso(summary.timestamp)), _REPLAY_HINT)
    entry = summary.branch(branch)
    floor = state.get(STATE_BRANCHES, {}).get(branch)
    if floor:
        if compare_versions(entry.version, floor["version"]) < 0:
            raise TrustError("checking branch %s: Expected version >= %s, got %s (commit %s)"
                             % (branch, floor["version"], entry.version or '""', objects.to_hex(entry.commit)[:12]),
                             _REPLAY_HINT)
        if entry.timestamp < floor["timestamp"]:
            raise TrustError("checking branch %s: Expected a commit made at or after %s, got %s (commit %s)"
                             % (branch, iso(floor["timestamp"]), iso(entry.timestamp),
                                objects.to_hex(entry.commit)[:12]), _REPLAY_HINT)
    return entry


def record_accepted(summary, branch, state):
    """Raise the floors in ``state`` to this accepted summary and branch (never lowers them).

    Call after ``check_not_older`` passed; the caller saves ``state`` durably.
    """
    state[STATE_SERIAL] = max(state.get(STATE_SERIAL, 0), summary.serial)
    state[STATE_TIMESTAMP] = max(state.get(STATE_TIMESTAMP, 0), summary.timestamp)
    entry = summary.branch(branch)
    floors = dict(state.get(STATE_BRANCHES, {}))
    old = floors.get(branch)
    if old:
        version = entry.version if compare_versions(entry.version, old["version"]) >= 0 else old["version"]
        stamp = max(entry.timestamp, old["timestamp"])
    else:
        version, stamp = entry.version, entry.timestamp
    floors[branch] = {"version": version, "timestamp": stamp, "commit": entry.commit}
    state[STATE_BRANCHES] = floors
    return state


def check_commit(summary, branch, commit_id, commit, board=""):
    """The commit a pull reached must be the one the summary names, for this branch and board (T5)."""
    entry = summary.branch(branch)
    where = "checking commit %s for branch %s" % (objects.to_hex(commit_id)[:12], branch)
    if commit_id != entry.commit:
        raise TrustError("%s: the summary names commit %s" % (where, objects.to_hex(entry.commit)[:12]),
                         "pull again; the repository changed during the pull")
    if commit.branch != branch:
        raise TrustError("%s: the commit was made for branch %s" % (where, commit.branch),
                         "the publisher mixed up branches; re-publish")
    for got in (commit.board, entry.board):
        if board and got and got != board:
            raise TrustError("%s: the commit is for board %s, this device is %s" % (where, got, board),
                             "check [remote] branch and [device] board in the device configuration")
    if commit.version != entry.version or commit.timestamp != entry.timestamp:
        raise TrustError("%s: version/time %s/%d differ from the summary's %s/%d"
                         % (where, commit.version, commit.timestamp, entry.version, entry.timestamp))
