"""A board's disk layout for provisioning: ``[disk]`` and ``[partition.NAME]`` of a board config.

Pure (parsed INI sections in, objects out); part of ``updater.board``, which re-exports
``parse_size`` and ``partition_device``. Keys: docs/board-config.md.
"""

from . import ini
from .errors import ConfigError

TABLES = ("gpt", "mbr")
PART_TYPES = ("linux", "efi", "fat32", "swap")
FILESYSTEMS = ("ext4", "vfat", "none")
ROLES = ("sysroot", "boot", "data", "none")
MIB = 1024 * 1024


def parse_size(text, where):
    """Bytes from '4096', '0x1000', '512K', '64M', '2G' (binary units)."""
    raw = text.strip()
    mult = 1
    if raw and raw[-1] in "KkMmGg":
        mult = {"k": 1024, "m": MIB, "g": MIB * 1024}[raw[-1].lower()]
        raw = raw[:-1]
    value = ini.parse_int(raw, where) * mult
    if value < 0:
        raise ConfigError("%s: expected a size of at least 0, got '%s'" % (where, text))
    return value


def where(sec, key):
    return "%s:%d: [%s] %s" % (sec.source, sec.lines.get(key, sec.line), sec.name, key)


def bad(sec, key, msg, hint=None):
    return ConfigError("%s: %s" % (where(sec, key), msg), hint)


def choice(sec, key, choices, default=None):
    value = sec.get(key, default) if default is not None else sec.get(key)
    if value not in choices:
        raise bad(sec, key, "expected one of %s, got '%s'" % (", ".join(choices), value))
    return value


class Partition:
    """One ``[partition.NAME]`` section."""

    def __init__(self, name, sec):
        self.name = name
        self.index = sec.get_int("index", minimum=1, maximum=128)
        raw = sec.get("size")
        self.size = None if raw == "rest" else parse_size(raw, where(sec, "size"))
        if self.size is not None and (self.size == 0 or self.size % (MIB)):
            raise bad(sec, "size", "expected 'rest' or a positive whole number of MiB, got '%s'" % raw)
        self.type = choice(sec, "type", PART_TYPES, "linux")
        self.fs = choice(sec, "fs", FILESYSTEMS)
        self.label = sec.get("label", name)
        if len(self.label) > 16 or " " in self.label:
            raise bad(sec, "label", "expected at most 16 characters without blanks, got '%s'" % self.label)
        self.bootable = sec.get_bool("bootable", False)
        self.role = choice(sec, "role", ROLES, "none")
        self.sec = sec

    def as_dict(self):
        return {"name": self.name, "index": self.index, "size": self.size, "type": self.type,
                "fs": self.fs, "label": self.label, "bootable": self.bootable, "role": self.role}


def partition_device(disk, index):
    """Linux's name for partition ``index`` of ``disk`` (/dev/vda -> /dev/vda1, mmcblk1 -> mmcblk1p1)."""
    sep = "p" if disk[-1:].isdigit() else ""
    return "%s%s%d" % (disk, sep, index)


class DiskLayout:
    """The partition table provisioning writes: ``[disk]`` plus ``[partition.NAME]`` sections."""

    def __init__(self, sec, parts):
        self.table = choice(sec, "table", TABLES)
        self.device = sec.get("device")
        if not self.device.startswith("/dev/"):
            raise bad(sec, "device", "expected the whole-disk device under /dev, got '%s'" % self.device)
        raw = sec.get("size", "")
        self.size = parse_size(raw, where(sec, "size")) if raw else None
        self.first_offset = parse_size(sec.get("first_offset", "1M"), where(sec, "first_offset"))
        if self.first_offset < MIB or self.first_offset % (MIB):
            raise bad(sec, "first_offset", "expected a whole number of MiB, at least 1M, got %d" % self.first_offset)
        self.sec = sec
        self.partitions = sorted(parts, key=lambda p: p.index)
        if not self.partitions:
            raise ConfigError("%s: [disk] needs at least one [partition.NAME] section" % sec.source)
        for i, p in enumerate(self.partitions):
            if p.index != i + 1:
                raise bad(p.sec, "index", "partitions must be numbered 1, 2, ... without gaps; expected %d, got %d"
                           % (i + 1, p.index))
            if p.size is None and i != len(self.partitions) - 1:
                raise bad(p.sec, "size", "only the last partition may take the 'rest' of the disk")
        if self.table == "mbr" and len(self.partitions) > 4:
            raise bad(sec, "table", "an MBR holds at most 4 primary partitions, got %d" % len(self.partitions))
        roots = [p for p in self.partitions if p.role == "sysroot"]
        if len(roots) != 1:
            raise bad(sec, "table", "exactly one partition must have role = sysroot, got %d" % len(roots))
        if self.size is not None:
            need = self.first_offset + sum(p.size or MIB for p in self.partitions)
            if need > self.size:
                raise bad(sec, "size", "the partitions need %d bytes, the disk has %d" % (need, self.size))

    def sysroot(self):
        for p in self.partitions:
            if p.role == "sysroot":
                return p

    def as_dict(self):
        return {"table": self.table, "device": self.device, "size": self.size,
                "first_offset": self.first_offset, "partitions": [p.as_dict() for p in self.partitions]}
