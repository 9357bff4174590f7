"""Assemble a device for the QEMU tests: OS trees, a sysroot, its disk image and the env flash.

Scenarios 1, 2, 4 and 5 boot images made by ``updater provision`` (qemu/server.py). Scenario 3
and the bad-input cases need states provisioning does not make (a trial staged without an
upgrade, a broken build, damaged files), so their sysroot is built here with the repository
commands (``updater --repo R init/commit/checkout``) and by hand, following docs/architecture.md:

    SYSROOT/boot/boot.scr, SYSROOT/boot.scr   the compiled boot script (two copies: distro_bootcmd
                                              tries /boot.scr first, then /boot/boot.scr)
    SYSROOT/boot/updater-env.txt              fallback contract values for a lost environment
    SYSROOT/updater/repo/                     repository with the committed OS trees
    SYSROOT/updater/deploy/NAME/              checkouts (hard links; etc/ copied), NAME = COMMIT.0
    SYSROOT/updater/var/                      the shared /var

The env flash is the QEMU virt machine's second pflash bank (64 MiB of 0xff) with the U-Boot
environment at offset 0: the board's default environment (board-configs/<board>.env) plus the
boot contract.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from updater import ubootenv
from updater.host.diskimage import DiskImage, Partition, clamp_times
from updater.host.sysrootseed import compile_boot_script

from . import tree
from .guest import ARCHES, CACHE, TOP

FLASH_SIZE = 64 << 20
ENV_SIZE = 0x40000
DISK_SIZE = 448 << 20
BOARDS = {"arm64": "qemu-arm64", "armhf": "qemu-arm"}
BOOTARGS = "console=ttyAMA0 rootwait=10 panic=5"


def run_updater(*args, check=True):
    """Run the updater CLI on the host; returns its parsed --json output."""
    cmd = [sys.executable, "-m", "updater"] + list(args) + ["--json"]
    res = subprocess.run(cmd, cwd=TOP, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and res.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), res.returncode, res.stderr.decode()))
    return json.loads(res.stdout or b"{}")


def _inputs_key(arch):
    """A hash of everything an OS tree is built from, to reuse cached trees."""
    h = hashlib.sha256(arch.encode())
    paths = [tree.OS_INIT, tree.EARLY_INIT, os.path.abspath(tree.__file__)]
    for top in ("updater", "board-configs"):
        for root, dirs, files in os.walk(os.path.join(TOP, top)):
            dirs[:] = sorted(d for d in dirs if d not in ("host", "__pycache__"))
            paths += [os.path.join(root, f) for f in sorted(files) if not f.endswith(".pyc")]
    for p in paths:
        h.update(p.encode())
        with open(p, "rb") as f:
            h.update(f.read())
    for part in ("kernel", "busybox", "python"):
        with open(os.path.join(CACHE, arch, part, ".stamp"), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def os_tree(arch, version, broken=False):
    """Path of the OS tree ``version`` for ``arch``, built once into qemu/cache/build."""
    key = _inputs_key(arch)
    name = version + ("-broken" if broken else "")
    dest = os.path.join(CACHE, "build", arch, key, name)
    if not os.path.isdir(dest):
        parent = os.path.dirname(os.path.dirname(dest))
        for old in os.listdir(parent) if os.path.isdir(parent) else []:
            # Trees built from older sources; an hour's grace for another run still using them.
            path = os.path.join(parent, old)
            if old != key and time.time() - os.stat(path).st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tree.build_tree(arch, version, tmp, broken=broken)
        os.rename(tmp, dest)
    return dest


def default_env(arch):
    with open(os.path.join(TOP, "board-configs", BOARDS[arch] + ".env")) as f:
        return ubootenv.parse_text(f.read())


def env_vars(arch, **contract):
    """The full environment U-Boot should load: board defaults, quick boot, and the contract."""
    env = default_env(arch)
    env.update({"bootdelay": "0", "boot_targets": "virtio0", "upd_bootargs": BOOTARGS,
                "upd_limit": "3", "upd_count": "0"})
    for k, v in contract.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def write_flash(path, variables=None, raw_env=None):
    """A 64 MiB pflash bank of 0xff with the env image at offset 0."""
    image = raw_env if raw_env is not None else ubootenv.encode(variables, ENV_SIZE, pad=0xff)
    with open(path, "wb") as f:
        f.write(image)
        f.write(b"\xff" * (FLASH_SIZE - len(image)))
    return path


def read_flash_env(path):
    with open(path, "rb") as f:
        return ubootenv.parse(f.read(ENV_SIZE))


class Device:
    """A sysroot directory being assembled, and what is deployed in it."""

    def __init__(self, arch, workdir, branch=None):
        self.arch = arch
        self.workdir = workdir
        self.root = os.path.join(workdir, "sysroot")
        self.repo = os.path.join(self.root, "updater", "repo")
        self.branch = branch or "%s/stable" % BOARDS[arch]
        self.commits = {}
        self.deployments = {}
        for d in ("boot", "updater/deploy", "updater/var", "updater/tmp"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        # The device configuration (board, U-Boot bootloader, trusted key) and its repository.
        key = os.path.join(workdir, "signing-key")
        run_updater("keygen", "--out", key)
        run_updater("--sysroot", self.root, "--board", BOARDS[arch], "init", "--remote",
                    "file:///mnt/repo", "--branch", self.branch, "--trust", key + ".pub",
                    "--bootloader", "uboot")
        compile_boot_script(ARCHES[arch]["mkimage_arch"], os.path.join(self.root, "boot", "boot.scr"),
                            epoch=tree.EPOCH)
        shutil.copy(os.path.join(self.root, "boot", "boot.scr"), os.path.join(self.root, "boot.scr"))

    def commit(self, version, broken=False):
        out = run_updater("--repo", self.repo, "commit", "--branch", self.branch, "--version", version,
                          "--subject", "QEMU test OS %s" % version, "--timestamp", str(tree.EPOCH),
                          os_tree(self.arch, version, broken))
        self.commits[version] = out["commit"]
        return out["commit"]

    def deploy(self, version, serial=0):
        name = "%s.%d" % (self.commits[version], serial)
        dest = os.path.join(self.root, "updater", "deploy", name)
        run_updater("--repo", self.repo, "checkout", "--copy", "etc", self.commits[version], dest)
        self.deployments[version] = name
        return name

    def write_fallback(self, current, extra=None):
        lines = {"upd_current": current, "upd_bootargs": BOOTARGS}
        lines.update(extra or {})
        with open(os.path.join(self.root, "boot", "updater-env.txt"), "w") as f:
            f.write(ubootenv.format_text(lines))

    def disk(self, path):
        clamp_times(self.root, tree.EPOCH)
        img = DiskImage("gpt", epoch=tree.EPOCH)
        img.add(Partition("sysroot", DISK_SIZE, source=self.root, label="sysroot", bootable=True))
        img.write(path)
        return path


def copy_sparse(src, dst):
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)
    return dst
