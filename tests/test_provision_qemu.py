"""A provisioned image boots: real U-Boot (Debian's qemu_arm64) reads the env flash image that
`updater provision` wrote, runs the compiled boot.scr from the image's sysroot, and Linux comes
up in the first deployment, where `updater status` says it is booted (pytest -m qemu)."""

import os
import re
import shutil
import sys

import pytest

from provkit import EPOCH, missing_tool
from updater.host import keys as keys_mod
from updater.host import provision
from updater.host.commit import commit_source
from updater.repo import Repo

pytestmark = pytest.mark.qemu
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TOP not in sys.path:
    sys.path.insert(0, TOP)


def _why_not(arch):
    from qemu import guest

    a = guest.ARCHES[arch]
    if missing_tool():
        return missing_tool()
    if shutil.which(a["qemu"]) is None:
        return "%s is not installed (run .ci/setup)" % a["qemu"]
    if not os.path.exists(a["uboot"]):
        return "%s is missing (apt-get install u-boot-qemu)" % a["uboot"]
    if not guest.have_pieces(arch):
        return "the %s guest pieces are not fetched (run qemu/fetch %s)" % (arch, arch)
    return None


@pytest.mark.parametrize("arch,board", [("arm64", "qemu-arm64"), ("armhf", "qemu-arm")])
def test_provisioned_image_boots_its_first_deployment(tmp_path, arch, board):
    why = _why_not(arch)
    if why:
        pytest.skip(why)
    from qemu import sysroot as qsys
    from qemu import vm as qvm

    tree = qsys.os_tree(arch, "v1")
    repo = Repo.init(str(tmp_path / "build-repo"), "bare")
    cid, _ = commit_source(repo, tree, "%s/stable" % board, "QEMU test OS v1", "v1", timestamp=EPOCH)
    key = keys_mod.keygen(str(tmp_path / "build.key"))
    keys_mod.sign_commit(repo, cid, [key])
    out = str(tmp_path / "disk.img")
    rec = provision.provision_image(board, repo.path, "%s/stable" % board, out, key_pub=[str(tmp_path / "build.key.pub")],
                                    unit_values={"bootdelay": "0", "boot_targets": "virtio0", "serial#": "QEMU0001"})
    name = rec["deployment"]
    m = qvm.VM(arch, rec["env"]["file"], [out], str(tmp_path / "console.log"), name="provisioned")
    try:
        m.start()
        m.expect(r"U-Boot 2023", 30, mark="u-boot")
        m.expect(r"Found U-Boot script /boot\.scr", 30, mark="boot.scr")
        m.expect(r"updater: booting %s" % re.escape(name), 30, mark="script chose the deployment")
        m.expect(r"Starting kernel", 30, mark="kernel")
        m.expect(r"updater-init: booting deployment %s" % re.escape(name), 90, mark="early boot")
        m.expect(r"UPDATER-QEMU: init version=v1 deployment=%s" % re.escape(name), 90, mark="init")
        m.expect(r"UPDATER-QEMU: ready", 90, mark="shell")
        assert m.sh("cat /run/updater/booted")[1] == name
        rc, text = m.sh("updater --sysroot /sysroot status --json", timeout=120)
        assert name in text
        rc, text = m.sh("updater --board %s env print serial# upd_current" % board, timeout=120)
        assert "serial#=QEMU0001" in text and "upd_current=%s" % name in text
        rc, text = m.sh("updater --repo /sysroot/updater/repo fsck", timeout=180)
        print("boot times: %s" % m.boot_times())
    finally:
        m.kill()
