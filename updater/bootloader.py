"""The boot contract between the updater and the boot script, behind one small interface.

Contract (bootloader-scripts/README.md; variable names per board config, these are the keys):

    current  deployment NAME known to boot                       (text, "" if none)
    trial    deployment NAME staged for trial boots              (text, "" if none)
    count    trial boots attempted so far                        (int 0-9)
    limit    trial boots allowed before falling back             (int 1-9)
    failed   a trial the boot script gave up on; `updater boot` reports and clears it

A backend offers ``read() -> dict`` and ``write(changes, force=False)``; ``write`` applies every
change in ONE durable write (None or "" clears a key). ``read`` also returns ``raw`` (the stored
text of each key, None if absent), ``env_ok`` and ``problem`` (why the store is unusable).

Backends: UBootBootloader (the board's U-Boot env through envstore; all other variables are
preserved) and FileBootloader (a text file, for tests, demos and boards without U-Boot).
``simulate_boot`` is the boot script's state machine as a pure function, so tests and the demo
exercise the very logic boot.cmd implements in hush.
"""

from . import fs
from .errors import FormatError, UsageError

CONTRACT_KEYS = ("current", "trial", "count", "limit", "failed")
NAME_KEYS = ("current", "trial", "failed")
FILE_FORMAT = 1
FILE_HEADER = "# updater boot contract, format 1"
SYSROOT_FILE = "updater/bootenv"
MAX_NAME = 128
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


def _digit(raw, low):
    """int of a one-digit decimal text in low..9, else None (what the boot script accepts)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if isinstance(raw, str) and len(raw) == 1 and "0" <= raw <= "9" and int(raw) >= low:
        return int(raw)
    return None


def name_problem(name):
    if not name or len(name) > MAX_NAME:
        return "expected 1-%d characters, got %d" % (MAX_NAME, len(name or ""))
    for ch in name:
        if ch not in _NAME_CHARS:
            return "only letters, digits, '.', '_' and '-' are allowed, got %r" % name
    return None


def contract_from_raw(raw):
    """The contract dict from stored text values ({key: text or None})."""
    out = {"raw": dict(raw)}
    for key in NAME_KEYS:
        out[key] = raw.get(key) or ""
    out["count"] = _digit(raw.get("count"), 0)
    if raw.get("count") is None:
        out["count"] = 0
    out["limit"] = _digit(raw.get("limit"), 1)
    return out


def encode_changes(changes):
    """{key: stored text or None (delete)} from contract changes; UsageError on a bad key/value."""
    out = {}
    for key in changes:
        if key not in CONTRACT_KEYS:
            raise UsageError("changing the boot contract: unknown key '%s' (expected one of %s)"
                             % (key, ", ".join(CONTRACT_KEYS)))
        value = changes[key]
        if value is None or value == "":
            out[key] = None
            continue
        if key in NAME_KEYS:
            why = name_problem(value) if isinstance(value, str) else "expected text, got %r" % (value,)
            if why:
                raise UsageError("changing the boot contract: %s: %s" % (key, why))
            out[key] = value
        else:
            low = 1 if key == "limit" else 0
            if _digit(value, low) is None:
                raise UsageError("changing the boot contract: %s must be a whole number %d-9, got %r"
                                 % (key, low, value))
            out[key] = str(value)
    return out


# --- the boot script's state machine --------------------------------------------------------------
def simulate_boot(contract, can_load=None):
    """(deployment to boot or None, new contract): one run of boot.cmd, as a pure function.

    ``contract`` holds the contract keys (values as stored text or as read(); missing = empty);
    ``can_load(name) -> bool`` says whether the kernel (and initrd, fdt) of a deployment load
    (default: all do). The rules, identical to bootloader-scripts/README.md:

    1. no trial (trial empty): boot current, write nothing.
    2. trial pending: if count is a digit 0-9 (empty counts as 0), limit a digit 1-9 (anything
       else counts as 1), count < limit and the trial's files load: count += 1, save, boot the
       trial.
    3. otherwise give up the trial: failed = trial, trial = "", count = 0, save, boot current.
    In 1 and 3, if current is empty or its files do not load: return None (the script ends and
    U-Boot's normal boot command continues), after saving what rule 3 changed.
    """
    loadable = can_load or (lambda name: True)
    source = contract.get("raw") or contract  # read() results carry the stored text in "raw"
    raw = {}
    for key in CONTRACT_KEYS:
        value = source.get(key)
        raw[key] = "" if value is None else str(value)
    new = dict(raw)
    trial = raw["trial"]
    if trial:
        count = _digit(raw["count"] or "0", 0)
        limit = _digit(raw["limit"], 1) or 1
        if count is not None and count < limit and loadable(trial):
            new["count"] = str(count + 1)
            return trial, contract_from_raw(new)
        new["failed"] = trial
        new["trial"] = ""
        new["count"] = "0"
    current = raw["current"]
    target = current if current and loadable(current) else None
    return target, contract_from_raw(new)


def changes_between(old, new):
    """The contract changes that turn ``old`` into ``new`` (keys whose values differ)."""
    out = {}
    for key in CONTRACT_KEYS:
        a, b = old.get(key), new.get(key)
        if a in (None, "") and b in (None, ""):
            continue
        if str(a) != str(b):
            out[key] = b
    return out


def boot_once(bootloader, can_load=None):
    """Run simulate_boot on a backend and store its changes: the deployment 'booted' (or None)."""
    before = bootloader.read()
    target, after = simulate_boot(before, can_load)
    changes = changes_between(before, after)
    if changes:
        bootloader.write(changes)
    return target


# --- backends --------------------------------------------------------------------------------------
class FileBootloader:
    """The contract in a text file, replaced atomically (fs.write_atomic) on every write.

    Format: the header line ``# updater boot contract, format 1``, then ``key=value`` lines sorted
    by key, for the keys that are set. Nothing else is allowed.
    """

    def __init__(self, path):
        self.path = path

    def _load(self):
        if fs.stat(self.path) is None:
            return {}
        text = fs.read_bytes(self.path, 4096, "reading boot contract").decode()
        lines = text.split("\n")
        if lines[0] != FILE_HEADER:
            raise FormatError("reading boot contract %s: the first line must be '%s'" % (self.path, FILE_HEADER),
                              "restore the file, or delete it to start with an empty contract")
        raw = {}
        for n, line in enumerate(lines[1:]):
            if not line:
                continue
            eq = line.find("=")
            key = line[:eq] if eq > 0 else ""
            if key not in CONTRACT_KEYS or key in raw:
                raise FormatError("reading boot contract %s:%d: unexpected line %r" % (self.path, n + 2, line[:60]))
            raw[key] = line[eq + 1:]
        return raw

    def read(self):
        out = contract_from_raw(self._load())
        out["env_ok"] = True
        out["problem"] = None
        return out

    def write(self, changes, force=False):
        raw = self._load()
        for key, value in encode_changes(changes).items():
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = value
        body = [FILE_HEADER] + ["%s=%s" % (k, raw[k]) for k in sorted(raw)]
        fs.write_atomic(self.path, ("\n".join(body) + "\n").encode())


class UBootBootloader:
    """The contract in the board's U-Boot environment (names from ``[boot] var_*``)."""

    def __init__(self, board, storage=None, env_file=None, store=None):
        from . import envstore

        self.board = board
        self.names = board.boot.vars
        self.store = store or envstore.open_env(board, env_file, storage, lock=storage is None)

    def read(self):
        env = self.store.load()
        variables = env.variables
        problem = env.problem()
        if variables is None:
            variables = self.store.defaults or {}
        raw = {}
        for key in CONTRACT_KEYS:
            raw[key] = variables.get(self.names[key])
        out = contract_from_raw(raw)
        out["env_ok"] = problem is None
        out["problem"] = problem
        return out

    def write(self, changes, force=False):
        stored = encode_changes(changes)
        env_changes = {}
        for key in stored:
            env_changes[self.names[key]] = stored[key]
        self.store.update(env_changes, force)


def for_sysroot(sysroot_path, config, board=None, env_file=None):
    """The backend a device configuration names: [device] bootloader = uboot | file."""
    if config.bootloader == "file":
        return FileBootloader(fs.join(sysroot_path, SYSROOT_FILE))
    if board is None:
        from . import board as board_mod

        board = board_mod.load(config.board)
    return UBootBootloader(board, env_file=env_file)
