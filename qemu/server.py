"""The build-server side of the QEMU scenarios, made with the updater's own host commands.

    WORKDIR/signing-key(.pub)    the Ed25519 key the releases are signed with
    WORKDIR/updates/repo/        the published repository: commits of the OS trees (qemu/tree.py)
                                 on BOARD/stable, signed summary (`updater publish --key`) and a
                                 static delta from the previous release (`updater delta`)
    updates disk image           an ext4 file system (mkfs.ext4 -d, no root mounts) holding
                                 updates/: the guest mounts it on /mnt/updates and pulls from
                                 REMOTE = file:///mnt/updates/repo (the guest has no network)
    device image                 `updater provision` of a release: the GPT disk with the sysroot
                                 partition and IMAGE.env, the 64 MiB env flash bank

Everything here is built once per test session and copied (sparse) for each scenario.
"""

import os
import shutil
import subprocess

from . import tree
from .sysroot import BOARDS, copy_sparse, os_tree, run_updater

REMOTE = "file:///mnt/updates/repo"
UPDATES_LABEL = "updates"
# Quick boots (values of the default env a factory would set per board: 2 s less per boot).
UNIT_VALUES = {"bootdelay": "0", "boot_targets": "virtio0", "serial#": "QEMU0001"}


class Release:
    """A published repository for one architecture, and device images provisioned from it."""

    def __init__(self, arch, workdir):
        self.arch = arch
        self.board = BOARDS[arch]
        self.branch = "%s/stable" % self.board
        self.workdir = workdir
        self.updates = os.path.join(workdir, "updates")
        self.repo = os.path.join(self.updates, "repo")
        self.key = os.path.join(workdir, "signing-key")
        self.commits = {}
        os.makedirs(self.updates, exist_ok=True)
        run_updater("keygen", "--out", self.key)
        run_updater("--repo", self.repo, "init", "--mode", "bare")

    def release(self, version, broken=False):
        """Commit OS tree ``version``, make a delta from the previous release, publish; the commit."""
        previous = self.commits[list(self.commits)[-1]] if self.commits else None
        out = run_updater("--repo", self.repo, "commit", "--branch", self.branch, "--version", version,
                          "--subject", "QEMU test OS %s" % version, "--timestamp",
                          str(tree.EPOCH + 3600 * len(self.commits)), os_tree(self.arch, version, broken))
        self.commits[version] = out["commit"]
        if previous:
            run_updater("--repo", self.repo, "delta", "--from", previous, "--to", out["commit"], "--jobs", "1")
        run_updater("--repo", self.repo, "publish", "--key", self.key)
        return out["commit"]

    def deployment(self, version, serial=0):
        return "%s.%d" % (self.commits[version], serial)

    def provision(self, version, image, size="448M"):
        """`updater provision` of ``version`` into ``image`` (+ ``image``.env, the flash bank)."""
        argv = ["provision", "--board", self.board, "--repo", self.repo, "--ref", self.commits[version],
                "--output", image, "--size", size, "--key-pub", self.key + ".pub", "--remote", REMOTE]
        for name in sorted(UNIT_VALUES):
            argv += ["--set", "%s=%s" % (name, UNIT_VALUES[name])]
        return run_updater(*argv)

    def updates_disk(self, image):
        """An ext4 image of updates/ (the published repository), for a second virtio disk."""
        size = 0
        for root, _, files in os.walk(self.updates):
            for name in files:
                size += os.lstat(os.path.join(root, name)).st_size + 4096
        size = (size * 5 // 4 + (16 << 20)) // (1 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", UPDATES_LABEL, "-O", "^has_journal", "-E", "root_owner=0:0",
                        "-d", self.updates, image, "%dM" % size], check=True)
        return image


class DeviceImages:
    """A provisioned device (disk + env flash) and the updates disk, copied fresh for each VM."""

    def __init__(self, release, version, workdir, with_updates=True):
        self.release = release
        self.version = version
        os.makedirs(workdir, exist_ok=True)
        self.disk = os.path.join(workdir, "disk.img")
        self.record = release.provision(version, self.disk)
        self.flash = self.record["env"]["file"]
        self.deployment = self.record["deployment"]
        self.updates = release.updates_disk(os.path.join(workdir, "updates.img")) if with_updates else None

    def fresh(self, dest):
        """(flash, [disks]) copies in the directory ``dest``; the sysroot disk comes LAST (Linux's
        vda; U-Boot's virtio0 is the same disk), the updates disk is vdb."""
        os.makedirs(dest, exist_ok=True)
        flash = os.path.join(dest, "flash.img")
        shutil.copyfile(self.flash, flash)
        disks = []
        if self.updates:
            disks.append(copy_sparse(self.updates, os.path.join(dest, "updates.img")))
        disks.append(copy_sparse(self.disk, os.path.join(dest, "disk.img")))
        return flash, disks
