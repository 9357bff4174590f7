"""How big a provisioned sysroot file system must be, computed before anything is written.

``tally(repo, commit_id)`` walks a commit once and counts what a freshly provisioned sysroot
holds: the repository (each distinct object once: its inode and blocks), the first deployment
(directories, fresh empty files and copied /etc files; everything else is a hard link), and
the sysroot's own small files. ``ext4_bytes(tally)`` then finds the smallest ext4 file system
(4 KiB blocks, 256-byte inodes, one inode per ``inode_ratio`` bytes, as provisioning makes it)
whose free blocks and inodes hold that, counting what mke2fs itself takes: the journal
(e2fsprogs' default size for the file-system size), inode tables, bitmaps, group descriptors
with their resize reserve, and superblock backups. A safety margin covers extent-tree blocks
and directory index blocks. Tests check that an image of exactly this size provisions.
"""

from .. import objects
from ..objects import to_hex

BLOCK = 4096
INODE_SIZE = 256
INODE_RATIO = 16384
MIB = 1 << 20
_DIR_ENTRY = 8  # ext4 dirent header; the name follows, padded to 4 bytes
_OBJECT_NAME = 62 + 1 + 6  # objects/XX/<62 hex>.<kind>
# The sysroot's own entries: updater/, its config, state, lock, keys/, deploy/, var/, tmp/,
# repo/ with config, objects/, refs/heads/BRANCH, tmp/; boot/ with boot.scr and the fallback.
_SYSROOT_INODES = 40
_SYSROOT_BLOCKS = 64


def _blocks(n):
    return -(-n // BLOCK)


def _dir_blocks(names_bytes, entries):
    """Blocks of a directory holding ``entries`` names of ``names_bytes`` bytes in total."""
    size = 24 + entries * _DIR_ENTRY + names_bytes + 3 * entries
    n = _blocks(size)
    return n + (1 if n > 1 else 0)  # an htree root once it spans blocks


class Tally:
    """What the sysroot will hold (see the module docstring); plain counters."""

    def __init__(self):
        self.inodes = _SYSROOT_INODES
        self.blocks = _SYSROOT_BLOCKS
        self.objects = 0
        self.object_bytes = 0
        self.files = 0
        self.dirs = 0
        self.content_bytes = 0

    def as_dict(self):
        return {"inodes": self.inodes, "blocks": self.blocks, "objects": self.objects,
                "object_bytes": self.object_bytes, "files": self.files, "dirs": self.dirs,
                "content_bytes": self.content_bytes}


def tally(repo, commit_id, copy_dirs=("etc",), extra_bytes=0):
    """A Tally for provisioning ``commit_id`` of ``repo`` (trees read and verified on the way)."""
    out = Tally()
    seen = {}
    data = repo.read_object(commit_id, "commit")
    meta_ids = {commit_id: len(data)}
    commit = objects.parse_commit(data, "commit " + to_hex(commit_id))
    stack = [(commit.tree, commit.meta, "")]
    while stack:
        tid, mid, rel = stack.pop()
        data = repo.read_object(tid, "tree")  # each path once: a deployment has a directory per path
        meta_ids[tid] = len(data)
        if mid not in meta_ids:
            meta_ids[mid] = len(repo.read_object(mid, "meta"))
        tree = objects.parse_tree(data, "tree " + to_hex(tid))
        copying = rel in copy_dirs or any(rel.startswith(d + "/") for d in copy_dirs)
        names = 0
        for name, oid, header, size in tree.files:
            out.files += 1
            names += len(name.encode())
            hdr = repo.header(header)
            if oid not in seen:
                seen[oid] = True
                out.objects += 1
                out.object_bytes += size
                out.inodes += 1
                if hdr.is_link():
                    out.blocks += 1 if len(hdr.target.encode()) > 59 else 0
                else:
                    out.blocks += _blocks(size)
                    out.content_bytes += size
            if not hdr.is_link() and (size == 0 or copying):
                out.inodes += 1  # a fresh inode in the deployment
                out.blocks += _blocks(size)
        for name, sub_tree, sub_meta in tree.dirs:
            names += len(name.encode())
            stack.append((sub_tree, sub_meta, rel + "/" + name if rel else name))
        out.dirs += 1
        out.inodes += 1
        out.blocks += _dir_blocks(names, len(tree.files) + len(tree.dirs))
    for oid in meta_ids:
        out.objects += 1
        out.inodes += 1
        out.blocks += _blocks(meta_ids[oid])
    out.objects += 1  # the commit's signature file
    out.inodes += 1
    out.blocks += 1
    # objects/XX/: 256 directories sharing the object names
    per_dir = -(-out.objects // 256)
    out.inodes += 256
    out.blocks += 256 * _dir_blocks(per_dir * _OBJECT_NAME, per_dir)
    out.blocks += _blocks(extra_bytes)
    return out


def journal_blocks(blocks):
    """e2fsprogs' default journal size (ext2fs_default_journal_size, 4 KiB blocks)."""
    if blocks < 2048:
        return 0
    for limit, size in ((32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192), (4096 * 1024, 16384),
                        (8192 * 1024, 32768), (16384 * 1024, 65536), (32768 * 1024, 131072)):
        if blocks < limit:
            return size
    return 262144


def _backup_groups(groups):
    """Groups holding a superblock backup (sparse_super: 0, 1 and powers of 3, 5, 7)."""
    out = {0}
    if groups > 1:
        out.add(1)
    for base in (3, 5, 7):
        n = base
        while n < groups:
            out.add(n)
            n *= base
    return len(out)


def overhead_blocks(size, inode_ratio=INODE_RATIO):
    """(blocks mke2fs uses itself, inodes the file system gets) for an ext4 of ``size`` bytes."""
    blocks = size // BLOCK
    groups = -(-blocks // 32768)
    inodes = size // inode_ratio
    per_group = -(-inodes // groups)
    per_group += -per_group % (BLOCK // INODE_SIZE)
    itable = groups * (per_group * INODE_SIZE // BLOCK)
    gdt = _blocks(groups * 64)
    grow_to = min(blocks * 1024, 1 << 32)
    reserved_gdt = min(max(_blocks(-(-grow_to // 32768) * 64) - gdt, 0), BLOCK // 4)
    sb = _backup_groups(groups) * (1 + gdt + reserved_gdt)
    used = journal_blocks(blocks) + itable + 2 * groups + sb + 2
    return used, groups * per_group


def ext4_bytes(t, inode_ratio=INODE_RATIO, margin=0.02):
    """The smallest ext4 size (whole MiB) that holds Tally ``t`` with ``margin`` spare blocks."""
    need_blocks = int(t.blocks * (1 + margin)) + 256
    need_inodes = int(t.inodes * (1 + margin)) + 16

    def fits(mib):
        size = mib * MIB
        used, inodes = overhead_blocks(size, inode_ratio)
        return size // BLOCK - used >= need_blocks and inodes >= need_inodes

    low, high = 1, 8
    while not fits(high):
        low, high = high, high * 2
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    mib = high
    # The journal grows in steps: make sure no smaller size fits after a step down.
    while mib > 1 and fits(mib - 1):
        mib -= 1
    return mib * MIB
