"""The boot contract between the updater and the boot script, behind one small interface.

Contract (variable names per board config ``[boot] var_*``; these are the keys):

    current   deployment NAME known to boot                         (text, "" if none)
    trial     deployment NAME staged for trial boots                (text, "" if none)
    count     trial boots attempted so far                          (int 0-9)
    limit     trial boots allowed before falling back               (int 1-9)
    failed    a trial the boot script gave up on; `updater boot` reports and clears it
Board settings the boot script reads (written by UBootBootloader with every change):
    kernel, initrd ("none": no initrd), fdt (absent: the firmware's device tree), bootargs

A backend offers ``read() -> dict`` and ``write(changes, force=False)``: ``write`` applies every
change in ONE durable write (None or "" clears a key). ``read`` returns the contract keys (count
and limit as int, None when the stored text is not a valid digit; a missing count reads 0) plus
``raw`` (stored text per key, None if absent), ``env_ok`` and ``problem`` (why the store is not
usable; U-Boot then runs on its default environment, which is what ``read`` reports).

Backends: UBootBootloader (the board's U-Boot env through envstore; all other variables are
preserved) and FileBootloader (a text file; tests, demos). ``simulate_boot`` is boot.cmd's state
machine as a pure function (docs/uboot.md, "Boot script state machine").
"""

from . import fs
from .errors import FormatError, UsageError
from .ubootenv import value_problem

CONTRACT_KEYS = ("current", "trial", "count", "limit", "failed")
SETTING_KEYS = ("kernel", "initrd", "fdt", "bootargs")
ALL_KEYS = CONTRACT_KEYS + SETTING_KEYS
NAME_KEYS = ("current", "trial", "failed")
SCRIPT_DEFAULT_LIMIT = 3  # what boot.cmd uses when the stored limit is not a digit 1-9
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
    out["count"] = 0 if not raw.get("count") else _digit(raw.get("count"), 0)
    out["limit"] = _digit(raw.get("limit"), 1)
    return out


def encode_changes(changes):
    """{key: stored text or None (delete)} from contract changes; UsageError on a bad key/value."""
    out = {}
    for key in changes:
        if key not in ALL_KEYS:
            raise UsageError("changing the boot contract: unknown key '%s' (expected one of %s)"
                             % (key, ", ".join(ALL_KEYS)))
        value = changes[key]
        if value is None or value == "":
            out[key] = None
            continue
        if key in NAME_KEYS:
            why = name_problem(value) if isinstance(value, str) else "expected text, got %r" % (value,)
        elif key in SETTING_KEYS:
            why = value_problem(value)
        else:
            low = 1 if key == "limit" else 0
            why = None if _digit(value, low) is not None else "expected a whole number %d-9, got %r" % (low, value)
        if why:
            raise UsageError("changing the boot contract: %s: %s" % (key, why))
        out[key] = str(value)
    return out


# --- the boot script's state machine --------------------------------------------------------------
def simulate_boot(contract, can_load=None, fallback=None):
    """(deployment booted or None, new contract): one run of boot.cmd, as a pure function.

    ``contract``: the keys as stored text or as read() returns them (missing = empty).
    ``can_load(name) -> bool``: whether that deployment's kernel, initrd and fdt load (default
    all do). ``fallback``: the keys boot.cmd imports from /boot/updater-env.txt when current and
    trial are both empty (a lost environment); only current and limit matter here. Rules:

    1. limit := the stored digit 1-9, else 3. count := the stored digit 0-9, empty = 0, else
       "exhausted".
    2. trial pending and count < limit: count += 1, save; try trial, then current, then failed.
    3. trial pending otherwise: failed := trial, trial := "", count := 0, save; try current,
       then failed (the trial just given up: a last resort).
    4. no trial: nothing is saved; try current, then failed.
    The first deployment in the try order whose files load boots; none: the script ends.
    """
    loadable = can_load or (lambda name: True)
    source = contract.get("raw") or contract  # read() results carry the stored text in "raw"
    raw = {}
    for key in ALL_KEYS:
        value = source.get(key)
        raw[key] = "" if value is None else str(value)
    new = dict(raw)
    env = dict(raw)
    if not env["current"] and not env["trial"] and fallback:
        for key in ("current", "limit", "kernel", "initrd", "fdt", "bootargs"):
            if fallback.get(key) is not None:
                env[key] = str(fallback[key])
    limit = _digit(env["limit"], 1) or SCRIPT_DEFAULT_LIMIT
    count = 0 if env["count"] == "" else _digit(env["count"], 0)
    order = [env["current"], env["trial"], env["failed"]]
    if env["trial"]:
        if count is not None and count < limit:
            new["count"] = str(count + 1)
            order = [env["trial"], env["current"], env["failed"]]
        else:
            new["failed"] = env["trial"]
            new["trial"] = ""
            new["count"] = "0"
            order = [env["current"], env["trial"]]
    for name in order:
        if name and loadable(name):
            return name, contract_from_raw(new)
    return None, contract_from_raw(new)


def changes_between(old, new):
    """The changes that turn contract ``old`` into ``new`` (stored text compared)."""
    a = old.get("raw") or old
    b = new.get("raw") or new
    out = {}
    for key in ALL_KEYS:
        va, vb = a.get(key), b.get(key)
        va = "" if va is None else str(va)
        vb = "" if vb is None else str(vb)
        if va != vb:
            out[key] = vb
    return out


def boot_once(bootloader, can_load=None, fallback=None):
    """Run simulate_boot on a backend and store its changes: the deployment 'booted' (or None)."""
    before = bootloader.read()
    target, after = simulate_boot(before, can_load, fallback)
    changes = changes_between(before, after)
    if changes:
        bootloader.write(changes, force=not before.get("env_ok", True))
    return target


# --- backends --------------------------------------------------------------------------------------
class FileBootloader:
    """The contract in a text file, replaced atomically (fs.write_atomic) on every write.

    Format: the header line ``# updater boot contract, format 1``, then ``key=value`` lines sorted
    by key for the keys that are set (contract and setting keys only). Nothing else is allowed.
    """

    def __init__(self, path):
        self.path = path

    def _load(self):
        if fs.stat(self.path) is None:
            return {}
        text = fs.read_bytes(self.path, 16384, "reading boot contract").decode()
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
            if key not in ALL_KEYS or key in raw:
                raise FormatError("reading boot contract %s:%d: unexpected line %r" % (self.path, n + 2, line[:60]))
            raw[key] = line[eq + 1:]
        return raw

    def read(self):
        raw = self._load()
        out = contract_from_raw(dict((k, raw.get(k)) for k in ALL_KEYS))
        out["env_ok"] = True
        out["problem"] = None
        return out

    def write(self, changes, force=False):
        raw = self._load()
        stored = encode_changes(changes)
        for key in stored:
            if stored[key] is None:
                raw.pop(key, None)
            else:
                raw[key] = stored[key]
        body = [FILE_HEADER] + ["%s=%s" % (k, raw[k]) for k in sorted(raw)]
        fs.write_atomic(self.path, ("\n".join(body) + "\n").encode())


class UBootBootloader:
    """The contract in the board's U-Boot environment (names from ``[boot] var_*``).

    Every write also stores the board's settings (kernel, initrd, fdt, bootargs) so the boot
    script always loads what the board config says; all in the same single env write.
    """

    def __init__(self, board, storage=None, env_file=None, store=None):
        from . import envstore

        self.board = board
        self.names = board.boot.vars
        self.store = store or envstore.open_env(board, env_file, storage, lock=storage is None and not env_file)

    def read(self):
        env = self.store.load()
        variables = env.variables
        problem = env.problem()
        if variables is None:
            variables = self.store.defaults or {}
        raw = {}
        for key in ALL_KEYS:
            raw[key] = variables.get(self.names[key])
        out = contract_from_raw(raw)
        out["env_ok"] = problem is None
        out["problem"] = problem
        return out

    def write(self, changes, force=False):
        merged = dict(self.board.boot.settings())
        for key in changes:
            merged[key] = changes[key]
        stored = encode_changes(merged)
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
