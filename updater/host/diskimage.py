"""Build partitioned disk images from directories: no root, no loop devices, no mounts.

Each partition's ext4 file system is made from a directory with ``mkfs.ext4 -d`` into a
scratch file, then copied (sparsely) to its offset in the image; the table is written by
``sfdisk`` on the image file. Output is reproducible: fixed disk id, partition and file-system
UUIDs, directory hash seed, and every time stamp taken from ``epoch`` (default
SOURCE_DATE_EPOCH) -- mke2fs honours E2FSPROGS_FAKE_TIME for its own times, and inode times
come from the source tree (``clamp_times`` sets them). Hard links inside the tree are kept
(mke2fs -d preserves them), which deployments sharing inodes with repository objects need.

    img = DiskImage(table="gpt", disk_id="...")
    img.add(Partition("sysroot", 256 << 20, source=tree, label="sysroot", bootable=True))
    img.write("disk.img")

Needs e2fsprogs (mkfs.ext4 >= 1.43 for -d) and fdisk (sfdisk) from util-linux.
"""

import os
import subprocess
import uuid as uuidlib

from ..errors import ConfigError, StorageError

SECTOR = 512
ALIGN = 1 << 20  # first partition and every start on a 1 MiB boundary
LINUX_GPT = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
LINUX_MBR = "83"
_CHUNK = 1 << 20


def default_epoch():
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


def stable_uuid(*parts):
    """A UUID derived from names (same inputs, same UUID): for reproducible images."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "updater-diskimage:" + "/".join(parts)))


class Partition:
    """One partition: ``size`` bytes, filled from ``source`` (a directory, made into ext4), or
    from ``image`` (a ready file-system image), or left empty."""

    def __init__(self, name, size, source=None, image=None, label=None, uuid=None, fs_uuid=None,
                 bootable=False, type=None):
        if size <= 0 or size % SECTOR:
            raise ConfigError("partition %s: size %r is not a positive multiple of %d bytes"
                              % (name, size, SECTOR))
        if source is not None and image is not None:
            raise ConfigError("partition %s: give a source directory or an image, not both" % name)
        self.name = name
        self.size = size
        self.source = source
        self.image = image
        self.label = label if label is not None else name[:16]
        self.uuid = uuid
        self.fs_uuid = fs_uuid
        self.bootable = bootable
        self.type = type
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
                           "install e2fsprogs and fdisk (apt-get install e2fsprogs fdisk)")
    if res.returncode != 0:
        raise StorageError("%s: %s failed (exit %d): %s" % (doing, " ".join(cmd[:2]), res.returncode,
                                                           res.stderr.decode("utf-8", "replace").strip()))
    return res.stdout


def make_ext4(path, size, source=None, label="", fs_uuid=None, hash_seed=None, epoch=None,
              block_size=4096):
    """Write an ext4 file system of ``size`` bytes to the new file ``path``, filled from ``source``.

    Owners are taken from the source tree (the caller runs as root to keep root-owned files,
    or accepts its own uid); the root directory is owned by 0:0.
    """
    epoch = default_epoch() if epoch is None else epoch
    fs_uuid = fs_uuid or stable_uuid("fs", label, str(size))
    hash_seed = hash_seed or stable_uuid("hash", fs_uuid)
    with open(path, "wb") as f:
        f.truncate(size)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch), SOURCE_DATE_EPOCH=str(epoch))
    cmd = ["mkfs.ext4", "-F", "-q", "-b", str(block_size), "-I", "256", "-U", fs_uuid,
           "-E", "hash_seed=%s,root_owner=0:0,lazy_itable_init=0,nodiscard" % hash_seed]
    if label:
        cmd += ["-L", label]
    if source is not None:
        cmd += ["-d", source]
    cmd += [path, "%dk" % (size // 1024)]
    _run(cmd, "making the ext4 file system %s" % path, env=env)
    return path


def _copy_sparse(src, dst_f, offset):
    """Copy file ``src`` into the open image at ``offset``, seeking over all-zero chunks."""
    zero = bytes(_CHUNK)
    with open(src, "rb") as f:
        pos = offset
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            if chunk != zero[:len(chunk)]:
                dst_f.seek(pos)
                dst_f.write(chunk)
            pos += len(chunk)


class DiskImage:
    """A disk image: a partition table (``gpt`` or ``dos``) and partitions in order."""

    def __init__(self, table="gpt", disk_id=None, epoch=None):
        if table not in ("gpt", "dos"):
            raise ConfigError("disk image: partition table %r is not gpt or dos" % table)
        self.table = table
        self.disk_id = disk_id
        self.epoch = epoch
        self.partitions = []

    def add(self, part):
        self.partitions.append(part)
        return part

    def layout(self):
        """Give each partition its start; returns the image size in bytes."""
        pos = ALIGN
        for p in self.partitions:
            p.start = pos
            pos += -(-p.size // ALIGN) * ALIGN
        return pos + ALIGN  # room for the backup GPT

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

    def write(self, path, scratch_dir=None):
        """Write the image to ``path`` (replacing it); returns the partition list with starts."""
        total = self.layout()
        scratch_dir = scratch_dir or os.path.dirname(os.path.abspath(path))
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.truncate(total)
        _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", tmp], "partitioning %s" % path,
             stdin=self.sfdisk_script().encode())
        with open(tmp, "r+b") as f:
            for i, p in enumerate(self.partitions):
                fs_image = p.image
                made = None
                if p.source is not None:
                    made = os.path.join(scratch_dir, ".part%d-%s.ext4" % (i + 1, os.getpid()))
                    make_ext4(made, p.size, p.source, label=p.label, fs_uuid=p.fs_uuid, epoch=self.epoch)
                    fs_image = made
                try:
                    if fs_image is not None:
                        if os.path.getsize(fs_image) > p.size:
                            raise ConfigError("partition %s: image %s is %d bytes, larger than the "
                                              "partition (%d)" % (p.name, fs_image, os.path.getsize(fs_image), p.size))
                        _copy_sparse(fs_image, f, p.start)
                finally:
                    if made:
                        os.unlink(made)
        os.replace(tmp, path)
        return self.partitions
