"""Build the guest OS trees (what the repository commits) and their initramfs, without root.

An OS tree is a small but real ARM userland: busybox, CPython 3.11 from Debian, a copy of the
``updater`` device core (``updater/host`` excluded) and ``/sbin/init`` (``qemu/os-init``), plus
``/boot/vmlinuz`` and ``/boot/initrd.img``. Versions differ in ``/usr/share/updater-qemu/version``
and ``/etc/updater-qemu.conf``, so an update is visible from the guest; a ``broken`` tree's init
fails on purpose (reboots) before it would mark itself good.

The initramfs holds busybox, the early-boot step from ``bootloader-scripts/updater-init`` as
``/init``, ``/dev/console``, and the kernel modules the board needs to reach its disk (with
their dependencies, read from each module's ``depends=`` field; Debian's packages ship no
modules.dep), listed in load order in ``/lib/modules/load``.
"""

import os
import re
import shutil
import subprocess

from updater.host.diskimage import clamp_times

from .cpio import Cpio
from .guest import ARCHES, TOP, pieces

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
APPLETS = """sh ash cat echo ls mkdir rmdir mount umount switch_root poweroff reboot halt sleep insmod
modprobe lsmod grep sed dd sync cp mv rm ln od hexdump head tail tr cut findfs blkid setsid cttyhack
stat sha256sum md5sum uname mknod chmod chown touch df du find wc xargs true false test [ printf env
kill ps dmesg hostname readlink realpath basename dirname date chroot devmem tee expr seq
cmp diff awk vi less more free uptime sort uniq fsync truncate which clear""".split()
OS_INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "os-init")
EARLY_INIT = os.path.join(TOP, "bootloader-scripts", "updater-init")


# --- kernel modules ----------------------------------------------------------------------------
def _module_index(moddir):
    index = {}
    for root, _, files in os.walk(moddir):
        for name in files:
            if name.endswith(".ko"):
                index[name[:-3].replace("-", "_")] = os.path.join(root, name)
    return index


def _depends(path):
    with open(path, "rb") as f:
        data = f.read()
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    if not m or not m.group(1):
        return []
    return [d.decode().replace("-", "_") for d in m.group(1).split(b",") if d]


def module_order(moddir, wanted):
    """Module file paths for ``wanted`` names and their dependencies, dependencies first."""
    index = _module_index(moddir)
    order, seen = [], set()

    def visit(name, chain):
        if name in seen:
            return
        if name not in index:
            raise FileNotFoundError("kernel module %s (needed by %s) is not in %s"
                                    % (name, " <- ".join(chain) or "the board", moddir))
        for dep in _depends(index[name]):
            visit(dep, chain + [name])
        seen.add(name)
        order.append(index[name])

    for name in wanted:
        visit(name.replace("-", "_"), [])
    return order


# --- initramfs ---------------------------------------------------------------------------------
def build_initramfs(arch, early_init=EARLY_INIT):
    """The gzip-compressed newc initramfs for ``arch`` as bytes."""
    p = pieces(arch)
    c = Cpio(mtime=EPOCH)
    for d in ("bin", "dev", "proc", "sys", "sysroot", "newroot", "lib", "lib/modules", "tmp", "run"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    with open(p["busybox"], "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.symlink("bin/sh", "busybox")
    with open(early_init, "rb") as f:
        c.file("init", f.read(), 0o755)
    names = []
    for path in module_order(p["modules"], ARCHES[arch]["modules"]):
        name = os.path.basename(path)
        with open(path, "rb") as f:
            c.file("lib/modules/" + name, f.read())
        names.append(name)
    c.file("lib/modules/load", ("\n".join(names) + "\n").encode())
    return c.finish()


# --- OS trees ----------------------------------------------------------------------------------
def _write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def _copy_updater(dest):
    src = os.path.join(TOP, "updater")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("host", "__pycache__", "*.pyc"))


def _compile(path):
    """Byte-compile with the host's CPython when it is 3.11 like the guest's (faster starts on a
    read-only root); unchecked-hash pycs do not depend on file times."""
    code = "import sys; sys.exit(sys.version_info[:2] != (3, 11))"
    if subprocess.run(["python3", "-c", code]).returncode == 0:
        subprocess.run(["python3", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                        path], check=True, stdout=subprocess.DEVNULL)


def build_tree(arch, version, dest, broken=False, initramfs=None):
    """Write the OS tree ``version`` (e.g. "v1") for ``arch`` into the new directory ``dest``."""
    p = pieces(arch)
    if os.path.exists(dest):
        raise FileExistsError("building the %s OS tree: %s already exists" % (version, dest))
    shutil.copytree(p["python"], dest, symlinks=True, ignore=shutil.ignore_patterns(".stamp"))
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "var", "sysroot", "mnt/updates", "root",
              "boot", "etc", "usr/share/updater-qemu", "usr/lib/updater"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    shutil.copy(p["busybox"], os.path.join(dest, "bin", "busybox"))
    for applet in APPLETS:
        os.symlink("busybox", os.path.join(dest, "bin", applet))
    os.symlink("python3.11", os.path.join(dest, "usr", "bin", "python3"))
    with open(OS_INIT, "rb") as f:
        _write(os.path.join(dest, "sbin", "init"), f.read(), 0o755)
    _copy_updater(os.path.join(dest, "usr", "lib", "updater", "updater"))
    shutil.copytree(os.path.join(TOP, "board-configs"), os.path.join(dest, "etc", "updater", "board-configs"))
    _compile(os.path.join(dest, "usr", "lib", "updater"))
    _write(os.path.join(dest, "usr", "bin", "updater"),
           "#!/bin/sh\nPYTHONPATH=/usr/lib/updater exec /usr/bin/python3.11 -m updater \"$@\"\n", 0o755)
    _write(os.path.join(dest, "usr", "share", "updater-qemu", "version"), version + "\n")
    if broken:
        _write(os.path.join(dest, "usr", "share", "updater-qemu", "broken"),
               "this build's init fails on purpose before it is marked good\n")
    _write(os.path.join(dest, "etc", "updater-qemu.conf"),
           "# configuration shipped with %s\nversion=%s\ngreeting=hello from %s\n" % (version, version, version))
    _write(os.path.join(dest, "etc", "hostname"), "updater-qemu\n")
    _write(os.path.join(dest, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n")
    _write(os.path.join(dest, "etc", "group"), "root:x:0:\n")
    _write(os.path.join(dest, "etc", "os-release"),
           'NAME="updater QEMU test OS"\nID=updater-qemu\nVERSION_ID=%s\n' % version)
    shutil.copy(p["kernel"], os.path.join(dest, "boot", "vmlinuz"))
    if initramfs is None:
        initramfs = build_initramfs(arch)
    _write(os.path.join(dest, "boot", "initrd.img"), initramfs)
    clamp_times(dest, EPOCH)
    return dest
