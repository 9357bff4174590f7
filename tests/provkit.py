"""Shared pieces of the provisioning tests: a signed source repository and image inspection helpers."""

import hashlib
import json
import os
import shutil
import subprocess

from updater import fs, ubootenv
from updater.host import keys as keys_mod
from updater.host.commit import commit_source
from updater.objects import to_hex
from updater.repo import Repo

EPOCH = 1700000000
TOOLS = ("mkfs.ext4", "sfdisk", "debugfs", "e2fsck", "mkimage", "bmaptool", "mkfs.vfat", "mcopy")


def missing_tool():
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return "%s is not installed (run .ci/setup)" % tool
    if os.geteuid() != 0:
        return "provisioning keeps file owners: run the tests as root (or under fakeroot)"
    return None


def write_tree(root, files):
    for rel, data in sorted(files.items()):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(data, tuple) and data[0] == "link":
            os.symlink(data[1], path)
        elif isinstance(data, tuple) and data[0] == "hardlink":
            os.link(os.path.join(root, data[1]), path)
        else:
            with open(path, "wb") as f:
                f.write(data)
    return root


def os_files(version="1.0"):
    """A small OS tree: kernel, initrd, init, /etc, hard links, a symlink, an empty file, a long file."""
    rnd = hashlib.sha256(version.encode()).digest()
    return {
        "boot/vmlinuz": rnd * 40000,
        "boot/initrd.img": rnd[::-1] * 3000,
        "sbin/init": b"#!/bin/sh\nexec /bin/sh\n",
        "boot/dtbs/am335x-boneblack.dtb": b"\xd0\x0d\xfe\xed" + rnd,
        "etc/app.conf": b"version=%s\n" % version.encode(),
        "etc/hostname": b"unit\n",
        "usr/bin/hello": b"#!/bin/sh\necho hello\n",
        "usr/bin/hello2": ("hardlink", "usr/bin/hello"),
        "usr/bin/hl": ("link", "hello"),
        "usr/share/doc/empty": b"",
        "usr/share/doc/zeros": bytes(3 * 4096) + b"tail",
        "usr/share/version": version.encode(),
    }


class Source:
    """A build server's repository with signed commits, and its key pair."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.path = os.path.join(tmp, "repo")
        self.repo = Repo.init(self.path, "bare")
        self.key = keys_mod.keygen(os.path.join(tmp, "build.key"))
        self.pub = os.path.join(tmp, "build.key.pub")
        self.commits = {}

    def commit(self, version, branch="qemu-arm64/stable", board=None, sign=True, files=None):
        src = write_tree(os.path.join(self.tmp, "tree-%s-%s" % (branch.replace("/", "_"), version)),
                         files or os_files(version))
        cid, _ = commit_source(self.repo, src, branch, "build " + version, version, board, timestamp=EPOCH)
        if sign:
            keys_mod.sign_commit(self.repo, cid, [self.key])
        self.commits[(branch, version)] = cid
        return cid


def run(cmd, **kw):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    assert res.returncode == 0, "%s failed (%d): %s" % (cmd, res.returncode, res.stderr.decode())
    return res.stdout.decode("utf-8", "replace")


def sfdisk_json(image):
    return json.loads(run(["sfdisk", "-J", image]))["partitiontable"]


def part_device(image, part_start_sectors):
    return "%s?offset=%d" % (image, part_start_sectors * 512)


def debugfs(device, request):
    return run(["debugfs", "-R", request, device])


def inode_of(device, path):
    out = debugfs(device, "stat %s" % path)
    first = out.split("\n", 1)[0]
    assert first.startswith("Inode:"), out
    return int(first.split()[1])


def cat(device, path):
    res = subprocess.run(["debugfs", "-R", "cat %s" % path, device], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return res.stdout


def ls(device, path):
    """Names in a directory of the file system (debugfs ls -p: /ino/mode/uid/gid/name/size/)."""
    out = debugfs(device, "ls -p %s" % path)
    names = []
    for line in out.splitlines():
        parts = line.split("/")
        if len(parts) >= 7 and parts[5] not in (".", ".."):
            names.append(parts[5])
    return sorted(names)


def env_at(path, offset, size, mode=ubootenv.FLAGS_COUNTER, offset2=None):
    with open(path, "rb") as f:
        f.seek(offset)
        images = [f.read(size)]
        if offset2 is not None:
            f.seek(offset2)
            images.append(f.read(size))
    return ubootenv.parse(images, mode)


def sha256(path):
    return to_hex(fs.sha256_file(path)[0])


def flash_over(image, dest):
    """bmaptool copy IMAGE onto ``dest``, a file standing for a used medium (its old bytes stay
    where the bmap maps nothing). Through a loop device (a real block device: bmaptool writes only
    the mapped blocks); where none can be attached, the bmap's ranges are applied by hand."""
    res = subprocess.run(["losetup", "-f", "--show", dest], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if res.returncode == 0:
        loop = res.stdout.decode().strip()
        try:
            out = subprocess.run(["bmaptool", "-q", "copy", image, loop], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert out.returncode == 0, out.stderr.decode()
        finally:
            subprocess.run(["losetup", "-d", loop])
        return "loop"
    from updater.host import bmap

    parsed = bmap.parse_bmap(open(image + ".bmap", "rb").read())
    bs = parsed["block_size"]
    with open(image, "rb") as src, open(dest, "r+b") as dst:
        for first, last, _ in parsed["ranges"]:
            src.seek(first * bs)
            dst.seek(first * bs)
            dst.write(src.read((last - first + 1) * bs))
    return "ranges"
