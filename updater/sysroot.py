"""The device sysroot: layout, device configuration and durable state (SYSROOT_FORMAT 1).

Layout (docs/sysroot.md)::

    SYSROOT/updater/config        device configuration (INI, below)
    SYSROOT/updater/keys/*.pub    trusted Ed25519 public keys (raw 32 bytes or hex text)
    SYSROOT/updater/state         durable state (canonical CBOR map)
    SYSROOT/updater/lock          flock lock held across pull, deploy, boot-env writes, prune
    SYSROOT/updater/repo/         the repository
    SYSROOT/updater/deploy/NAME/  deployments (NAME = COMMIT.SERIAL)
    SYSROOT/updater/var/          the shared /var
    SYSROOT/updater/tmp/          staging, cleaned before work

Device configuration (INI)::

    [device]   format = 1, board = NAME (a board config), bootloader = uboot | file
    [remote]   url = http://host/repo (or file:///path), branch = BOARD/CHANNEL
    [trust]    keys = NAME.pub ... (files in updater/keys/)
    [deploy]   keep = 3, reserve = 16M (free space left untouched), health-checks = PATH ...,
               verify = new | all (objects re-hashed before a deployment links them)

State (canonical CBOR map, STATE_FORMAT 1; field table in docs/sysroot.md): "format",
"deployments" {NAME: record}, "seq" (last deployment sequence number), "boot_history" (newest
last, at most MAX_HISTORY), "last_result"; other engineers' keys (downgrade floor) are kept
as they are by every load/modify/save.
"""

import os
import time

from . import cbor, fs, ini
from .disklayout import parse_size
from .errors import ConfigError, FormatError, SpaceError, StorageError
from .repo import Repo

SYSROOT_FORMAT = 1
STATE_FORMAT = 1
MAX_STATE_BYTES = 1024 * 1024
BOOTLOADERS = ("uboot", "file")
VERIFY_POLICIES = ("new", "all")
MAX_HISTORY = 32
CMDLINE_ENV = "UPDATER_CMDLINE"
PROC_CMDLINE = "/proc/cmdline"
RUN_BOOTED = "/run/updater/booted"


class DeviceConfig:
    def __init__(self, board="", bootloader="file", url="", branch="", keys=None, keep=3,
                 reserve=16 * 1024 * 1024, health_checks=None, verify="new"):
        self.board = board
        self.bootloader = bootloader
        self.url = url
        self.branch = branch
        self.keys = keys or []
        self.keep = keep
        self.reserve = reserve
        self.health_checks = health_checks or []
        self.verify = verify

    @staticmethod
    def parse(text, source="device config"):
        parsed = ini.parse(text, source)
        parsed.only(("device", "remote", "trust", "deploy"))
        dev = parsed.section("device")
        fmt = dev.get_int("format")
        if fmt != SYSROOT_FORMAT:
            raise ConfigError("%s: format %d, expected %d" % (source, fmt, SYSROOT_FORMAT))
        cfg = DeviceConfig()
        cfg.board = dev.get("board", "")
        cfg.bootloader = dev.get("bootloader", "file")
        if cfg.bootloader not in BOOTLOADERS:
            raise ConfigError("%s: [device] bootloader must be one of %s, got '%s'"
                              % (source, ", ".join(BOOTLOADERS), cfg.bootloader))
        dev.done()
        remote = parsed.section("remote", required=False)
        cfg.url = remote.get("url", "")
        cfg.branch = remote.get("branch", "")
        remote.done()
        trust = parsed.section("trust", required=False)
        cfg.keys = trust.get_list("keys", [])
        for name in cfg.keys:
            if "/" in name or name.startswith("."):
                raise ConfigError("%s: [trust] keys names files in updater/keys/, got '%s'" % (source, name))
        trust.done()
        dep = parsed.section("deploy", required=False)
        cfg.keep = dep.get_int("keep", 3, minimum=2, maximum=100)
        cfg.reserve = parse_size(dep.get("reserve", "16M"), "%s: [deploy] reserve" % source)
        cfg.health_checks = dep.get_list("health-checks", [])
        for cmd in cfg.health_checks:
            if not cmd.startswith("/") or "'" in cmd:
                raise ConfigError("%s: [deploy] health-checks are absolute paths of programs (no quotes), got '%s'"
                                  % (source, cmd))
        cfg.verify = dep.get("verify", "new")
        if cfg.verify not in VERIFY_POLICIES:
            raise ConfigError("%s: [deploy] verify must be one of %s, got '%s'"
                              % (source, ", ".join(VERIFY_POLICIES), cfg.verify))
        dep.done()
        return cfg

    def dump(self):
        sections = [("device", [("format", SYSROOT_FORMAT), ("board", self.board), ("bootloader", self.bootloader)])]
        sections.append(("remote", [("url", self.url), ("branch", self.branch)]))
        sections.append(("trust", [("keys", " ".join(self.keys))]))
        dep = [("keep", self.keep), ("reserve", self.reserve), ("verify", self.verify)]
        if self.health_checks:
            dep.append(("health-checks", " ".join(self.health_checks)))
        sections.append(("deploy", dep))
        return ini.dump(sections, header="updater device configuration (docs/sysroot.md)")


class Sysroot:
    def __init__(self, path):
        self.path = path.rstrip("/") or "/"
        self.dir = fs.join(self.path, "updater")
        self.config_path = fs.join(self.dir, "config")
        self.keys_dir = fs.join(self.dir, "keys")
        self.state_path = fs.join(self.dir, "state")
        self.lock_path = fs.join(self.dir, "lock")
        self.repo_path = fs.join(self.dir, "repo")
        self.deploy_dir = fs.join(self.dir, "deploy")
        self.var_dir = fs.join(self.dir, "var")
        self.tmp_dir = fs.join(self.dir, "tmp")
        self._repo = None
        self._config = None
        self._board = None
        self.env_file = None  # --env-file: an image standing for the board's env medium (host provisioning)

    @staticmethod
    def create(path, config, keys=None, repo_mode=None):
        """Lay out a new sysroot (or update the config of an existing one).

        ``keys``: {file name: key bytes} written into updater/keys/.
        """
        root = Sysroot(path)
        fs.makedirs(root.dir)
        for directory in (root.keys_dir, root.deploy_dir, root.var_dir, root.tmp_dir):
            fs.mkdir(directory, exist_ok=True)
        Repo.init(root.repo_path, repo_mode)
        for name in sorted(keys or {}):
            fs.write_atomic(fs.join(root.keys_dir, name), keys[name])
        fs.write_atomic(root.config_path, config.dump().encode())
        fs.fsync_dir(root.dir)
        return root

    @staticmethod
    def open(path):
        root = Sysroot(path)
        if not fs.exists(root.config_path):
            raise ConfigError("opening sysroot %s: no device configuration at %s" % (path, root.config_path),
                              "initialise it with: updater --sysroot %s init --remote URL --branch B --trust KEY.pub" % path)
        return root

    def config(self):
        if self._config is None:
            text = fs.read_bytes(self.config_path, 65536, "reading device configuration")
            self._config = DeviceConfig.parse(text.decode("utf-8", "replace"), self.config_path)
        return self._config

    def repo(self):
        if self._repo is None:
            self._repo = Repo.open(self.repo_path)
        return self._repo

    def lock(self, wait=True, notify=None):
        """The sysroot's flock (pull, deploy, boot-env writes, prune), as a context manager.

        Re-entrant within a process: ``upgrade`` holds it and the pull it calls may take it again.
        A second process waits (``notify`` says for whom) or, with ``wait=False``, gets
        LockedError naming the holder.
        """
        held = _HELD.get(self.lock_path)
        if held is not None:
            held[1] += 1
            return _Held(self.lock_path)
        lock = fs.FileLock(self.lock_path, "sysroot " + self.path).acquire(wait, notify)
        _HELD[self.lock_path] = [lock, 1]
        return _Held(self.lock_path)

    def board(self):
        """The Board of [device] board (updater.board), read once per Sysroot."""
        if self._board is None:
            from . import board as board_mod

            self._board = board_mod.load(self.config().board)
        return self._board

    def bootloader(self, board=None, env_file=None):
        """The boot-selection backend the device configuration names (updater.bootloader)."""
        from . import bootloader

        if board is None and self.config().bootloader == "uboot":
            board = self.board()
        return bootloader.for_sysroot(self.path, self.config(), board, env_file or self.env_file)

    def deployment_path(self, name):
        return fs.join(self.deploy_dir, name)

    def check_space(self, needed, doing):
        """SpaceError unless ``needed`` bytes fit beside the configured reserve (nothing written)."""
        free = fs.free_bytes(self.dir)
        reserve = self.config().reserve
        if free < needed + reserve:
            raise SpaceError("%s: needs about %d bytes plus the reserve of %d, but only %d are free on %s"
                             % (doing, needed, reserve, free, self.path),
                             "free space with 'updater --sysroot %s prune', or lower [deploy] reserve" % self.path)
        return free

    def booted(self):
        """NAME of the deployment this system runs (None on a host or an unknown boot).

        $UPDATER_CMDLINE names a file read instead of /proc/cmdline (tests, demos); without it
        /run/updater/booted (written by the early-boot init: what it really mounted, which may
        be a fallback) wins over ``updater.deployment=`` on /proc/cmdline.
        """
        override = os.getenv(CMDLINE_ENV)
        if override:
            if not fs.exists(override):
                return None
            return booted_from_cmdline(fs.read_bytes(override, 65536, "reading kernel command line"))
        if fs.exists(RUN_BOOTED):
            name = fs.read_bytes(RUN_BOOTED, 512, "reading booted deployment").decode("utf-8", "replace").strip()
            if name and "/" not in name and not name.startswith("."):
                return name
        if fs.exists(PROC_CMDLINE):
            return booted_from_cmdline(fs.read_bytes(PROC_CMDLINE, 65536, "reading kernel command line"))
        return None

    def trusted_keys(self):
        """{file name: 32-byte Ed25519 public key} of the configured keys (missing file: error)."""
        out = {}
        for name in self.config().keys:
            path = fs.join(self.keys_dir, name)
            if not fs.exists(path):
                raise ConfigError("reading trusted key %s: the file is missing" % path,
                                  "copy the build server's public key there, or fix [trust] keys")
            out[name] = parse_public_key(fs.read_bytes(path, 4096, "reading trusted key"), path)
        return out

    # --- durable state ----------------------------------------------------------------------
    def load_state(self):
        """The state map ({} on a new device). A corrupt state file is an error, never ignored."""
        st = fs.lstat(self.state_path)
        if st is None:
            return {"format": STATE_FORMAT}
        data = fs.read_bytes(self.state_path, MAX_STATE_BYTES, "reading device state")
        try:
            state = cbor.decode(data, "device state " + self.state_path)
        except FormatError as err:
            raise StorageError("reading device state %s: %s" % (self.state_path, err),
                               "the file is damaged; restore it or remove it to start over (the downgrade "
                               "floor is then lost)")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise StorageError("reading device state %s: unknown format" % self.state_path)
        return state

    def save_state(self, state):
        state["format"] = STATE_FORMAT
        history = state.get("boot_history")
        if isinstance(history, list) and len(history) > MAX_HISTORY:
            state["boot_history"] = history[-MAX_HISTORY:]
        fs.write_atomic(self.state_path, cbor.encode(state))


def records(state):
    """The {NAME: record} map of deployments in ``state`` (created if missing)."""
    recs = state.get("deployments")
    if not isinstance(recs, dict):
        recs = {}
        state["deployments"] = recs
    return recs


def add_history(state, event, booted, detail=""):
    """Append a boot-history entry {"time", "event", "booted", "detail"} (bounded on save)."""
    history = state.get("boot_history")
    if not isinstance(history, list):
        history = []
        state["boot_history"] = history
    history.append({"time": int(time.time()), "event": event, "booted": booted or "", "detail": detail})


def set_result(state, command, ok, message):
    state["last_result"] = {"time": int(time.time()), "command": command, "ok": bool(ok), "message": message}


def booted_from_cmdline(data):
    """The NAME of ``updater.deployment=NAME`` in kernel command-line bytes, or None."""
    for word in data.decode("utf-8", "replace").split():
        if word.startswith("updater.deployment="):
            name = word[len("updater.deployment="):]
            if name and "/" not in name and not name.startswith(".") and len(name) <= 128:
                return name
    return None


class _Held:
    """Context manager for one acquisition of a sysroot lock (see Sysroot.lock)."""

    def __init__(self, path):
        self.path = path
        self.released = False

    def release(self):
        if self.released:
            return
        self.released = True
        held = _HELD.get(self.path)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[self.path]
            held[0].release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


_HELD = {}


def parse_public_key(data, where="public key"):
    """A 32-byte Ed25519 public key from raw bytes, or 64 hex digits (with optional newline)."""
    if len(data) == 32:
        return bytes(data)
    text = data.decode("ascii", "replace").strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    raise ConfigError("reading %s: expected a 32-byte Ed25519 public key (raw, or 64 hex digits)" % where)
