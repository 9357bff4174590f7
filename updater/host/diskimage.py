"""Build partitioned disk images from directories: no root, no loop devices, no mounts.

The table is written by ``sfdisk`` on the image file; each ext4 partition is made in place with
``mkfs.ext4 -E offset=START -d DIR`` (a FAT one with ``mkfs.vfat --offset`` and ``mcopy``), and
``raw`` byte areas (a boot environment before the first partition) are written last. Output is
reproducible: fixed disk id, partition and file-system UUIDs, directory hash seed, FAT volume
id, and every time stamp taken from ``epoch`` (default SOURCE_DATE_EPOCH) -- mke2fs honours
E2FSPROGS_FAKE_TIME for its own times, and inode times come from the source tree
(``clamp_times`` sets them). Hard links inside the tree are kept (mke2fs -d preserves them),
which deployments sharing inodes with repository objects need.

    img = DiskImage(table="gpt", disk_id="...")
    img.add(Partition("sysroot", 256 << 20, source=tree, label="sysroot", bootable=True))
    img.write("disk.img")

``DiskImage(size=...)`` fixes the image size; the last partition may then have ``size=None``
(the rest). ``write`` builds into PATH.tmp and renames it; on any failure the temp is removed.
Needs e2fsprogs (mkfs.ext4 >= 1.43 for -d), fdisk (sfdisk), and for FAT dosfstools and mtools.
"""

import os
import stat
import subprocess
import uuid as uuidlib

from ..errors import ConfigError, StorageError

SECTOR = 512
ALIGN = 1 << 20  # first partition and every start on a 1 MiB boundary
LINUX_GPT = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
LINUX_MBR = "83"
# Partition types of board configs ([partition.NAME] type): (GPT type GUID, MBR id).
TYPES = {"linux": (LINUX_GPT, LINUX_MBR), "efi": ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "ef"),
         "fat32": ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "c"),
         "swap": ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "82")}
GPT_TAIL = ALIGN  # room left at the end for the backup GPT (33 sectors, kept 1 MiB aligned)


def default_epoch():
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


def stable_uuid(*parts):
    """A UUID derived from names (same inputs, same UUID): for reproducible images."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "updater-diskimage:" + "/".join(parts)))


class Partition:
    """One partition of ``size`` bytes (None: the rest of a fixed-size image; last one only).

    Contents: ``source`` (a directory, made into ext4, or into FAT with ``fs="vfat"``), ``files``
    (FAT only: {name in the FAT: host path}), or nothing.
    ``fs``: "ext4" (default with a source), "vfat", or None. ``lazy_itable_init`` leaves unused
    inode tables unwritten (the kernel zeroes them on first mount): right for images flashed
    with a bmap, where unwritten blocks keep whatever the medium held.
    """

    def __init__(self, name, size, source=None, label=None, uuid=None, fs_uuid=None,
                 bootable=False, type=None, fs=None, files=None, hash_seed=None, inode_ratio=None,
                 lazy_itable_init=False):
        if size is not None and (size <= 0 or size % SECTOR):
            raise ConfigError("partition %s: size %r is not a positive multiple of %d bytes"
                              % (name, size, SECTOR))
        if fs is None and (source is not None or files):
            fs = "vfat" if files and source is None else "ext4"
        if fs not in (None, "ext4", "vfat"):
            raise ConfigError("partition %s: file system %r is not ext4 or vfat" % (name, fs))
        if files and fs != "vfat":
            raise ConfigError("partition %s: single files can only be placed on a vfat partition" % name)
        self.name = name
        self.size = size
        self.source = source
        self.label = label if label is not None else name[:16]
        self.uuid = uuid
        self.fs_uuid = fs_uuid
        self.bootable = bootable
        self.type = type
        self.fs = fs
        self.files = dict(files or {})
        self.hash_seed = hash_seed
        self.inode_ratio = inode_ratio
        self.lazy_itable_init = lazy_itable_init
        self.start = None  # bytes, set by DiskImage.layout()


def clamp_times(root, epoch=None):
    """Set every time stamp under ``root`` (not following symlinks) to ``epoch``."""
    epoch = default_epoch() if epoch is None else epoch
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))


def _run(cmd, doing, env=None, stdin=None):
    try:
        res = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise StorageError("%s: %s is not installed" % (doing, cmd[0]),
                           "install e2fsprogs, fdisk, dosfstools and mtools (.ci/setup does)")
    if res.returncode != 0:
        raise StorageError("%s: %s failed (exit %d): %s" % (doing, " ".join(cmd[:2]), res.returncode,
                                                           res.stderr.decode("utf-8", "replace").strip()))
    return res.stdout


def make_ext4(path, size, source=None, label="", fs_uuid=None, hash_seed=None, epoch=None,
              block_size=4096, offset=None, lazy_itable_init=False, inode_ratio=None):
    """Write an ext4 file system of ``size`` bytes, filled from ``source``.

    Without ``offset`` into the new file ``path``; with it, into the existing file ``path`` (a
    disk image) at that byte offset. Owners are taken from the source tree (the caller runs as
    root to keep root-owned files, or accepts its own uid); the root directory is owned by 0:0.
    """
    epoch = default_epoch() if epoch is None else epoch
    fs_uuid = fs_uuid or stable_uuid("fs", label, str(size))
    hash_seed = hash_seed or stable_uuid("hash", fs_uuid)
    if offset is None:
        with open(path, "wb") as f:
            f.truncate(size)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch), SOURCE_DATE_EPOCH=str(epoch))
    ext = "hash_seed=%s,root_owner=0:0,lazy_itable_init=%d,nodiscard" % (hash_seed, 1 if lazy_itable_init else 0)
    if offset:
        ext += ",offset=%d" % offset
    cmd = ["mkfs.ext4", "-F", "-q", "-b", str(block_size), "-I", "256", "-U", fs_uuid, "-E", ext]
    if inode_ratio:
        cmd += ["-i", str(inode_ratio)]
    if label:
        cmd += ["-L", label]
    if source is not None:
        cmd += ["-d", source]
    cmd += [path, "%dk" % (size // 1024)]
    _run(cmd, "making the ext4 file system %s%s" % (path, " at offset %d" % offset if offset else ""), env=env)
    if source is not None:
        fix_times(path, source, epoch, offset)
    return path


def _debugfs_quote(path):
    if "\n" in path:
        raise ConfigError("making a reproducible ext4: the file name %r holds a newline, which debugfs "
                          "cannot address" % path, "rename the file in the source tree")
    return '"%s"' % path.replace('"', '""')


def fix_times(path, source, epoch, offset=None):
    """Set atime and ctime of every inode copied from ``source`` to ``epoch`` (debugfs -w).

    mke2fs -d copies each source inode's atime and ctime, which the host sets itself (reading a
    file updates its atime, any change sets ctime to now): without this, two builds differ.
    """
    cmds = []
    seen = set()

    def add(full, rel):
        st = os.lstat(full)
        if not stat.S_ISLNK(st.st_mode):  # mke2fs -d keeps hard links, except of symlinks
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
        quoted = _debugfs_quote(rel)
        cmds.append("sif %s atime @%d" % (quoted, epoch))
        cmds.append("sif %s ctime @%d" % (quoted, epoch))

    add(source, "/")
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        base = "" if rel == "." else "/" + rel
        for name in sorted(dirnames + filenames):
            add(os.path.join(dirpath, name), base + "/" + name)
    device = "%s?offset=%d" % (path, offset) if offset else path
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch))
    doing = "fixing the time stamps in the ext4 file system %s" % device
    try:
        res = subprocess.run(["debugfs", "-w", "-f", "-", device], input=("\n".join(cmds) + "\n").encode(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise StorageError("%s: debugfs is not installed" % doing, "apt-get install e2fsprogs")
    errors = [line for line in res.stderr.decode("utf-8", "replace").splitlines()
              if line.strip() and not line.startswith("debugfs ")]
    if res.returncode != 0 or errors:
        raise StorageError("%s: debugfs failed (exit %d): %s" % (doing, res.returncode, "; ".join(errors[:5])))


def ext4_journal_ranges(path, offset=0, block_size=4096):
    """(byte offset, length) runs of the journal of the ext4 at ``offset`` of ``path``.

    mke2fs zeroes the journal with fallocate where it can, so its blocks may be holes in the
    image; a bmap must still map them (a journal holding an older life's transactions could be
    replayed after a crash), so provisioning passes these runs as ``keep`` ranges.
    """
    device = "%s?offset=%d" % (path, offset) if offset else path
    runs = []
    for word in _run(["debugfs", "-R", "blocks <8>", device], "listing the journal blocks of %s" % device).split():
        b = int(word)
        if runs and runs[-1][1] == b:
            runs[-1][1] = b + 1
        else:
            runs.append([b, b + 1])
    return [(offset + a * block_size, (b - a) * block_size) for a, b in runs]


def make_vfat(path, size, offset, files=None, source=None, label="", volume_id=None, epoch=None):
    """A FAT file system of ``size`` bytes at ``offset`` of the existing image ``path``, holding
    ``files`` ({name: host path}) and/or the tree ``source``; reproducible (mkfs.vfat
    --invariant, a fixed volume id, every time stamp from ``epoch``)."""
    epoch = default_epoch() if epoch is None else epoch
    if offset % SECTOR:
        raise ConfigError("FAT partition at %d: not on a %d-byte sector" % (offset, SECTOR))
    volume_id = volume_id or stable_uuid("vfat", label, str(size))[:8]
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), MTOOLS_SKIP_CHECK="1", TZ="UTC")
    cmd = ["mkfs.vfat", "--invariant", "-i", volume_id, "--offset", str(offset // SECTOR)]
    if label:
        cmd += ["-n", label.upper()[:11]]
    _run(cmd + [path, str(size // 1024)], "making the FAT file system at offset %d of %s" % (offset, path), env=env)
    target = "%s@@%d" % (path, offset)
    entries = sorted((files or {}).items())
    if source is not None:
        entries += [(name, os.path.join(source, name)) for name in sorted(os.listdir(source))]
    for name, src in entries:
        # No -m: mtools then stamps every entry with SOURCE_DATE_EPOCH.
        _run(["mcopy", "-i", target, "-s", "-o", "-Q", src, "::/" + name.lstrip("/")],
             "copying %s into the FAT file system of %s" % (src, path), env=env)
    return path


class DiskImage:
    """A disk image: a partition table (``gpt`` or ``dos``) and partitions in order.

    ``first_offset``: where the first partition starts (whole MiB; raw bootloader and env areas
    lie before it). ``size``: the image size in bytes (default: just big enough).
    """

    def __init__(self, table="gpt", disk_id=None, epoch=None, first_offset=ALIGN, size=None):
        if table not in ("gpt", "dos"):
            raise ConfigError("disk image: partition table %r is not gpt or dos" % table)
        if first_offset < ALIGN or first_offset % ALIGN:
            raise ConfigError("disk image: the first partition must start on a whole MiB, got %d" % first_offset)
        if size is not None and (size <= 0 or size % SECTOR):
            raise ConfigError("disk image: size %r is not a positive multiple of %d bytes" % (size, SECTOR))
        self.table = table
        self.disk_id = disk_id
        self.epoch = epoch
        self.first_offset = first_offset
        self.size = size
        self.partitions = []
        self.raw = []  # (offset, bytes) written after the partitions

    def add(self, part):
        self.partitions.append(part)
        return part

    def add_raw(self, offset, data):
        """Write ``data`` at ``offset`` of the image (e.g. an env copy before the first partition)."""
        self.raw.append((offset, bytes(data)))

    def tail(self):
        return GPT_TAIL if self.table == "gpt" else 0

    def layout(self):
        """Give each partition its start (and the rest its size); returns the image size in bytes."""
        pos = self.first_offset
        for i, p in enumerate(self.partitions):
            p.start = pos
            if p.size is None:
                if i != len(self.partitions) - 1 or self.size is None:
                    raise ConfigError("disk image: only the last partition of a fixed-size image may "
                                      "take the rest (partition %s)" % p.name)
                rest = self.size - pos - self.tail()
                rest -= rest % ALIGN
                if rest < ALIGN:
                    raise ConfigError("disk image: no room left for partition %s (image %d bytes, "
                                      "it would start at %d)" % (p.name, self.size, pos))
                p.size = rest
            pos += -(-p.size // ALIGN) * ALIGN
        end = pos + self.tail()
        if self.size is not None:
            if end > self.size:
                raise ConfigError("disk image: the partitions need %d bytes, the image is %d" % (end, self.size))
            end = self.size
        for offset, data in self.raw:
            if offset + len(data) > self.first_offset and offset < end:
                for p in self.partitions:
                    if offset < p.start + p.size and p.start < offset + len(data):
                        raise ConfigError("disk image: raw data at %d-%d overlaps partition %s"
                                          % (offset, offset + len(data), p.name))
            if offset < (34 * SECTOR if self.table == "gpt" else SECTOR):
                raise ConfigError("disk image: raw data at %d would overwrite the partition table" % offset)
        return end

    def sfdisk_script(self):
        lines = ["label: %s" % self.table, "unit: sectors"]
        if self.table == "gpt":
            lines.append("label-id: %s" % (self.disk_id or stable_uuid("disk")).upper())
        else:
            lines.append("label-id: %s" % (self.disk_id or "0x5570da7e"))
        for i, p in enumerate(self.partitions):
            fields = ["start=%d" % (p.start // SECTOR), "size=%d" % (p.size // SECTOR)]
            if self.table == "gpt":
                fields.append("type=%s" % (p.type or LINUX_GPT))
                fields.append("uuid=%s" % (p.uuid or stable_uuid("part", str(i + 1), p.name)).upper())
                fields.append('name="%s"' % p.name)
                if p.bootable:
                    fields.append("attrs=LegacyBIOSBootable")
            else:
                fields.append("type=%s" % (p.type or LINUX_MBR))
                if p.bootable:
                    fields.append("bootable")
            lines.append(", ".join(fields))
        return "\n".join(lines) + "\n"

    def write(self, path):
        """Write the image to ``path`` (replacing it); returns the partition list with starts.

        Built in ``path``.tmp, renamed at the end; removed on any failure (nothing partial stays).
        """
        total = self.layout()
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.truncate(total)
            _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", tmp], "partitioning %s" % path,
                 stdin=self.sfdisk_script().encode())
            for p in self.partitions:
                self._fill(tmp, p)
            if self.raw:
                with open(tmp, "r+b") as f:
                    for offset, data in self.raw:
                        f.seek(offset)
                        f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return self.partitions

    def _fill(self, tmp, p):
        if p.fs == "ext4":
            make_ext4(tmp, p.size, p.source, label=p.label, fs_uuid=p.fs_uuid, hash_seed=p.hash_seed,
                      epoch=self.epoch, offset=p.start, lazy_itable_init=p.lazy_itable_init,
                      inode_ratio=p.inode_ratio)
        elif p.fs == "vfat":
            make_vfat(tmp, p.size, p.start, p.files, p.source, label=p.label,
                      volume_id=(p.fs_uuid or "").replace("-", "")[:8] or None, epoch=self.epoch)
