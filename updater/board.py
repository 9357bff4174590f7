"""Board configs: where a board keeps its U-Boot environment, how it boots, how its disk is laid out.

``parse(text, source)`` is pure (text in, Board out; unknown sections and keys are errors, offsets
and sizes are checked). ``load(name_or_path)`` finds and reads a file; ``search_path()`` says
where names are looked up (see docs/board-config.md, which documents every key):

1. the directories in the environment variable UPDATER_BOARD_CONFIGS (colon-separated);
2. ``board-configs/`` next to the ``updater`` package directory (a checkout, or a device where
   the package and its board configs were copied side by side);
3. ``board-configs/`` inside the package directory (a device image that nests them);
4. ``<sys.prefix>/share/updater/boards`` (pip installs them there as data files);
5. ``/etc/updater/board-configs`` (system-wide on a device).

Runs on CPython and MicroPython.
"""

import os
import sys

from . import fs, ini
from .bootloader import CONTRACT_KEYS, SETTING_KEYS
from .disklayout import DiskLayout, Partition, parse_size, partition_device  # noqa: F401 (re-exported)
from .disklayout import bad as _bad
from .disklayout import choice as _choice
from .disklayout import where as _where
from .errors import ConfigError, NotFoundError
from .ubootenv import FLAGS_BOOLEAN, FLAGS_COUNTER, MAX_ENV_SIZE, header_size, name_problem

BOARD_FORMAT = 1
SUFFIX = ".conf"
ENV_VAR = "UPDATER_BOARD_CONFIGS"
SYSTEM_DIR = "/etc/updater/board-configs"

STORAGE_KINDS = ("file", "block", "mtd", "cfi-nor")
DEFAULT_VARS = {"current": "upd_current", "trial": "upd_trial", "count": "upd_count",
                "limit": "upd_limit", "failed": "upd_failed", "kernel": "upd_kernel",
                "initrd": "upd_initrd", "fdt": "upd_fdt", "bootargs": "upd_bootargs"}
ARCHES = ("arm64", "arm")
BOOT_COMMANDS = ("booti", "bootz", "bootm")
CODECS = ("zlib", "xz", "zstd")
_UNSAFE_ARG_CHARS = "\"'\\;`"


def _pow2(n):
    return n > 0 and (n & (n - 1)) == 0


def _rel_path(sec, key, required):
    value = sec.get(key) if required else sec.get(key, "")
    if not value:
        if required:
            raise _bad(sec, key, "a path inside the deployment is required")
        return ""
    parts = value.split("/")
    if value.startswith("/") or ".." in parts or "" in parts or "." in parts:
        raise _bad(sec, key, "expected a relative path inside the deployment without '..', got '%s'" % value)
    for ch in value:
        if ch in _UNSAFE_ARG_CHARS or ch in " \t$":
            raise _bad(sec, key, "the path '%s' holds a character U-Boot scripts cannot quote" % value)
    return value


class EnvLayout:
    """Where the environment lives: ``[env]``. Offsets are relative to the medium ``device``."""

    def __init__(self, sec, base_dir):
        self.storage = _choice(sec, "storage", STORAGE_KINDS)
        self.device = sec.get("device")
        if not self.device.startswith("/"):
            raise _bad(sec, "device", "expected an absolute path on the device, got '%s'" % self.device)
        self.base = None
        if self.storage == "cfi-nor":
            self.base = sec.get_int("base", minimum=0)
        elif sec.has("base"):
            sec.get("base")
            raise _bad(sec, "base", "only storage = cfi-nor has a physical base address")
        self.offset = sec.get_int("offset", minimum=0)
        redundant_raw = sec.get("redundant_offset", "")
        self.redundant_offset = None
        if redundant_raw:
            self.redundant_offset = ini.parse_int(redundant_raw, _where(sec, "redundant_offset"))
            if self.redundant_offset < 0:
                raise _bad(sec, "redundant_offset", "negative offsets are not supported")
        hsize = header_size(self.redundant)
        self.size = sec.get_int("size", minimum=hsize + 1, maximum=MAX_ENV_SIZE)
        self.sector_size = sec.get_int("sector_size", minimum=1)
        if not _pow2(self.sector_size):
            raise _bad(sec, "sector_size", "expected a power of two, got %d" % self.sector_size)
        default_flags = FLAGS_BOOLEAN if self.storage == "cfi-nor" else FLAGS_COUNTER
        if self.redundant:
            self.flags = _choice(sec, "flags", (FLAGS_COUNTER, FLAGS_BOOLEAN), default_flags)
        else:
            self.flags = FLAGS_COUNTER
            if sec.has("flags"):
                sec.get("flags")
                raise _bad(sec, "flags", "the flags byte exists only in a redundant env (set redundant_offset)")
        pad = sec.get_int("pad", 0)
        if pad not in (0, 0xFF):
            raise _bad(sec, "pad", "expected 0x00 (as U-Boot saves) or 0xff (as mkenvimage), got 0x%x" % pad)
        self.pad = pad
        raw = sec.get("medium_size", "")
        self.medium_size = parse_size(raw, _where(sec, "medium_size")) if raw else None
        default = sec.get("default_env", "")
        self.default_env = fs.join(base_dir, default) if default else None
        self._check(sec)

    @property
    def redundant(self):
        return self.redundant_offset is not None

    @property
    def header(self):
        return header_size(self.redundant)

    def offsets(self):
        return [self.offset] if not self.redundant else [self.offset, self.redundant_offset]

    def span(self, offset):
        """(start, end) of the erase blocks a copy at ``offset`` occupies."""
        n = (self.size + self.sector_size - 1) // self.sector_size
        return offset, offset + n * self.sector_size

    def medium_end(self):
        """Bytes an image of the env medium needs: ``medium_size``, else the end of the last copy."""
        end = max(self.span(off)[1] for off in self.offsets())
        return self.medium_size if self.medium_size is not None else end

    def _check(self, sec):
        for key, off in (("offset", self.offset), ("redundant_offset", self.redundant_offset)):
            if off is not None and off % self.sector_size:
                raise _bad(sec, key, "0x%x is not a multiple of sector_size 0x%x" % (off, self.sector_size),
                           "U-Boot erases and writes whole sectors: align the copy to one")
        if self.storage == "block" and self.size % self.sector_size:
            raise _bad(sec, "size", "0x%x is not a multiple of sector_size 0x%x (block devices write "
                       "whole sectors)" % (self.size, self.sector_size))
        end = max(self.span(off)[1] for off in self.offsets())
        if self.medium_size is not None and self.medium_size < end:
            raise _bad(sec, "medium_size", "0x%x is smaller than the env area, which ends at 0x%x"
                       % (self.medium_size, end))
        if self.redundant:
            a0, a1 = self.span(self.offset)
            b0, b1 = self.span(self.redundant_offset)
            if a0 < b1 and b0 < a1:
                raise _bad(sec, "redundant_offset",
                           "copy 2 at 0x%x overlaps copy 1 (sectors 0x%x-0x%x): a torn write could "
                           "destroy both copies" % (self.redundant_offset, a0, a1 - 1))

    def as_dict(self):
        return {"storage": self.storage, "device": self.device, "base": self.base, "offset": self.offset,
                "size": self.size, "redundant_offset": self.redundant_offset,
                "sector_size": self.sector_size, "flags": self.flags if self.redundant else None,
                "pad": self.pad, "medium_size": self.medium_size, "default_env": self.default_env}


class BootSettings:
    """The boot contract's variable names and what the boot script loads: ``[boot]``."""

    def __init__(self, sec):
        self.vars = {}
        seen = {}
        for key in CONTRACT_KEYS + SETTING_KEYS:
            name = sec.get("var_" + key, DEFAULT_VARS[key])
            why = name_problem(name)
            if why is None and not _is_identifier(name):
                why = "a boot-script variable name must be letters, digits and '_', got %r" % name
            if why:
                raise _bad(sec, "var_" + key, why)
            if name in seen:
                raise _bad(sec, "var_" + key, "'%s' is already the variable for %s" % (name, seen[name]))
            seen[name] = key
            self.vars[key] = name
        self.attempt_limit = sec.get_int("attempt_limit", 3, minimum=1, maximum=9)
        self.kernel = _rel_path(sec, "kernel", True)
        self.initrd = _rel_path(sec, "initrd", False)
        self.fdt = _rel_path(sec, "fdt", False)
        self.boot_command = _choice(sec, "boot_command", BOOT_COMMANDS)
        self.kernel_args = sec.get("kernel_args", "")
        for ch in self.kernel_args:
            if ch in _UNSAFE_ARG_CHARS:
                raise _bad(sec, "kernel_args", "the character %r cannot be quoted in a U-Boot script" % ch)
        self.console = sec.get("console", "")
        if " " in self.console or [ch for ch in self.console if ch in _UNSAFE_ARG_CHARS]:
            raise _bad(sec, "console", "expected one console spec such as ttyAMA0,115200, got '%s'" % self.console)
        self.root = sec.get("root")

    def bootargs(self):
        """What the boot script puts on the kernel command line besides root= and the deployment."""
        parts = []
        if self.console:
            parts.append("console=" + self.console)
        if self.kernel_args:
            parts.append(self.kernel_args)
        return " ".join(parts)

    def settings(self):
        """The env values the boot script reads for this board (bootloader SETTING_KEYS)."""
        return {"kernel": self.kernel, "initrd": self.initrd or "none", "fdt": self.fdt or None,
                "bootargs": self.bootargs()}

    def as_dict(self):
        return {"vars": dict(self.vars), "attempt_limit": self.attempt_limit, "kernel": self.kernel,
                "initrd": self.initrd, "fdt": self.fdt, "boot_command": self.boot_command,
                "kernel_args": self.kernel_args, "console": self.console, "root": self.root,
                "bootargs": self.bootargs()}


def _is_identifier(name):
    for ch in name:
        if not (ch == "_" or "a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9"):
            return False
    return not ("0" <= name[0] <= "9")


class DeviceSettings:
    """What the device can do and must enforce: ``[device]``."""

    def __init__(self, sec):
        self.codecs = sec.get_list("codecs", ["zlib"])
        for codec in self.codecs:
            if codec not in CODECS:
                raise _bad(sec, "codecs", "unknown codec '%s' (known: %s)" % (codec, ", ".join(CODECS)))
        if len(set(self.codecs)) != len(self.codecs):
            raise _bad(sec, "codecs", "a codec is listed twice")
        if "zlib" not in self.codecs:
            raise _bad(sec, "codecs", "zlib must be listed: every device can inflate zlib")
        self.require_signatures = sec.get_bool("require_signatures", True)

    def as_dict(self):
        return {"codecs": list(self.codecs), "require_signatures": self.require_signatures}


class Board:
    def __init__(self, name, description, arch, env, boot, device, disk, source):
        self.name = name
        self.description = description
        self.arch = arch
        self.env = env
        self.boot = boot
        self.device = device
        self.disk = disk
        self.source = source

    def as_dict(self):
        return {"name": self.name, "description": self.description, "arch": self.arch,
                "source": self.source, "format": BOARD_FORMAT, "env": self.env.as_dict(),
                "boot": self.boot.as_dict(), "device": self.device.as_dict(), "disk": self.disk.as_dict()}


def parse(text, source="<board config>", base_dir="."):
    """A Board from config text; ConfigError naming file:line for any fault or unknown key."""
    doc = ini.parse(text, source)
    parts = [n for n in doc.names() if n.startswith("partition.")]
    doc.only(["board", "env", "boot", "device", "disk"] + parts)
    sec = doc.section("board")
    fmt = sec.get_int("format", BOARD_FORMAT)
    if fmt != BOARD_FORMAT:
        raise _bad(sec, "format", "this updater reads board config format %d, got %d" % (BOARD_FORMAT, fmt),
                   "use an updater release that knows format %d" % fmt)
    name = sec.get("name")
    if not valid_name(name):
        raise _bad(sec, "name", "expected lower-case letters, digits, '-', '_' or '.', got '%s'" % name)
    description = sec.get("description", "")
    arch = _choice(sec, "arch", ARCHES)
    sec.done()
    env_sec = doc.section("env")
    env = EnvLayout(env_sec, base_dir)
    env_sec.done()
    boot_sec = doc.section("boot")
    boot = BootSettings(boot_sec)
    boot_sec.done()
    dev_sec = doc.section("device", required=False)
    device = DeviceSettings(dev_sec)
    dev_sec.done()
    partitions = []
    for pname in parts:
        psec = doc.section(pname)
        label = pname[len("partition."):]
        if not label:
            raise ConfigError("%s:%d: a partition section needs a name: [partition.NAME]" % (source, psec.line))
        partitions.append(Partition(label, psec))
        psec.done()
    disk_sec = doc.section("disk")
    disk = DiskLayout(disk_sec, partitions)
    disk_sec.done()
    _cross_check(env, boot, disk)
    return Board(name, description, arch, env, boot, device, disk, source)


def _cross_check(env, boot, disk):
    root = disk.sysroot()
    if boot.root.startswith("/dev/") and boot.root != partition_device(disk.device, root.index):
        raise ConfigError("%s: [boot] root is %s but the sysroot is partition %d of %s (%s)"
                          % (disk.sec.source, boot.root, root.index, disk.device,
                             partition_device(disk.device, root.index)))
    if boot.root.startswith("LABEL=") and boot.root[6:] != root.label:
        raise ConfigError("%s: [boot] root is %s but the sysroot partition's label is %s"
                          % (disk.sec.source, boot.root, root.label))
    if env.storage == "block" and env.device == disk.device:
        for off in env.offsets():
            end = env.span(off)[1]
            if end > disk.first_offset:
                raise ConfigError("%s: the env copy at 0x%x ends at 0x%x, inside the first partition "
                                  "(which starts at 0x%x): raise [disk] first_offset"
                                  % (disk.sec.source, off, end, disk.first_offset))


# --- finding boards ------------------------------------------------------------------------------
def _package_dir():
    path = getattr(sys.modules.get("updater"), "__file__", None) or getattr(fs, "__file__", None)
    if not path:
        return None
    path = fs.abspath(path)
    while "/./" in path:
        path = path.replace("/./", "/")
    return fs.dirname(path)


def search_path():
    """Directories searched for NAME.conf, in order (see the module docstring)."""
    dirs = []
    env = os.getenv(ENV_VAR)
    if env:
        dirs.extend(d for d in env.split(":") if d)
    pkg = _package_dir()
    if pkg:
        dirs.append(fs.join(fs.dirname(pkg), "board-configs"))
        dirs.append(fs.join(pkg, "board-configs"))
    prefix = getattr(sys, "prefix", None)
    if prefix:
        dirs.append(fs.join(prefix, "share/updater/boards"))
    dirs.append(SYSTEM_DIR)
    return dirs


def valid_name(name):
    """Board names: lower-case letters, digits, '-', '_' and '.', not starting with '.'."""
    if not name or name[0] == ".":
        return False
    for ch in name:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch in "-_."):
            return False
    return True


def _is_path(name):
    return "/" in name or name.endswith(SUFFIX)


def find(name, dirs=None):
    """Path of the board config for a name or path; NotFoundError listing where it looked."""
    if _is_path(name):
        if fs.stat(name) is None:
            raise NotFoundError("reading board config %s: no such file" % name,
                                "give a board name (updater board list) or an existing file")
        return name
    if not valid_name(name):
        raise NotFoundError("finding board '%s': not a valid board name" % name, "updater board list")
    dirs = search_path() if dirs is None else dirs
    for d in dirs:
        path = fs.join(d, name + SUFFIX)
        st = fs.stat(path)
        if st is not None and st.is_reg():
            return path
    raise NotFoundError("finding board '%s': no %s%s in %s" % (name, name, SUFFIX, ", ".join(dirs)),
                        "updater board list shows the known boards; --board also takes a file path")


def load(name, dirs=None):
    """The Board for a name (searched) or a path to a .conf file."""
    path = find(name, dirs)
    text = fs.read_bytes(path, limit=256 * 1024, what="reading board config").decode()
    board = parse(text, path, fs.dirname(path))
    if not _is_path(name) and board.name != name:
        raise ConfigError("%s: [board] name is '%s' but the file is named %s%s" % (path, board.name, name, SUFFIX))
    return board


def available(dirs=None):
    """{name: path} of every board config found on the search path (first one wins)."""
    out = {}
    for d in search_path() if dirs is None else dirs:
        if not fs.is_dir(d):
            continue
        for entry in fs.listdir(d):
            if entry.endswith(SUFFIX) and not entry.startswith("."):
                out.setdefault(entry[: -len(SUFFIX)], fs.join(d, entry))
    return out


def default_env(board):
    """The board's U-Boot built-in default variables (``[env] default_env``), or None."""
    from .ubootenv import parse_text

    path = board.env.default_env
    if not path:
        return None
    text = fs.read_bytes(path, limit=board.env.size * 2, what="reading default environment").decode()
    return parse_text(text, path)


def fw_env_config(board, env_file=None):
    """fw_env.config text for libubootenv's fw_printenv/fw_setenv (one line per copy).

    With ``env_file`` the file stands for the env medium (a flash or disk image) at the same
    offsets; without it the board's device is named, which libubootenv cannot use for cfi-nor.
    """
    env = board.env
    device = env_file
    if device is None:
        if env.storage == "cfi-nor":
            from .errors import UnsupportedError

            raise UnsupportedError(
                "exporting fw_env.config for %s: its env is in NOR flash reached through %s, which "
                "libubootenv cannot program" % (board.name, env.device),
                "pass --env-file with an image of the flash bank",
            )
        device = env.device
    lines = ["# fw_env.config for board %s (updater board show %s --fw-env-config)" % (board.name, board.name),
             "# device offset env-size sector-size"]
    for off in env.offsets():
        lines.append("%s 0x%x 0x%x 0x%x" % (device, off, env.size, env.sector_size))
    return "\n".join(lines) + "\n"
