"""QEMU ARM end-to-end tests (pytest -m qemu): real U-Boot, real ARM kernels, real reboots.

They need qemu-system-arm (10.x from bookworm-backports), u-boot-qemu, u-boot-tools, e2fsprogs,
fdisk, and the guest pieces from ``qemu/fetch`` (run by .ci/setup); without them they skip and
say what to run. Every test gets fresh images in its own tmp_path; VMs run one at a time.
Each test's boot milestones (seconds since QEMU started) are printed in the summary.
"""

import os
import shutil
import sys

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if TOP not in sys.path:
    sys.path.insert(0, TOP)

from qemu import guest, server, sysroot, vm  # noqa: E402

BOOT_TIMES = []


def _missing(arch):
    a = guest.ARCHES[arch]
    for tool in (a["qemu"], "mkimage", "mkfs.ext4", "sfdisk"):
        if shutil.which(tool) is None:
            return "%s is not installed (run .ci/setup)" % tool
    if not os.path.exists(a["uboot"]):
        return "%s is missing (apt-get install u-boot-qemu)" % a["uboot"]
    if not guest.have_pieces(arch):
        return "the %s guest pieces are not fetched (run qemu/fetch %s)" % (arch, arch)
    return None


@pytest.fixture
def rig(tmp_path, request):
    """Factory for devices and VMs in this test's tmp_path; kills leftover VMs at the end."""

    class Rig:
        def __init__(self):
            self.vms = []

        def device(self, arch="arm64"):
            why = _missing(arch)
            if why:
                pytest.skip(why)
            return sysroot.Device(arch, str(tmp_path / ("dev-%s" % arch)))

        def vm(self, arch, flash, disks, name="vm", log="console.log"):
            m = vm.VM(arch, flash, disks, str(tmp_path / log), name="%s:%s" % (request.node.name, name))
            self.vms.append(m)
            return m.start()

        def record(self, m, label=""):
            BOOT_TIMES.append("%s%s: %s" % (request.node.name, label, m.boot_times()))

        def note(self, text):
            BOOT_TIMES.append("%s: %s" % (request.node.name, text))

    r = Rig()
    yield r
    for m in r.vms:
        if m.proc and m.proc.poll() is None:
            m.kill()


@pytest.fixture(scope="session")
def provisioned(tmp_path_factory):
    """Factory: per architecture (built once per session), a published repository and a device
    image provisioned with v1 by `updater provision` (qemu/server.py); on arm64 the repository
    also has v2 (with a v1 -> v2 delta) on an "updates" disk for the in-guest upgrades.
    ``.fresh(dir)`` gives copies of its flash and disks for one VM."""
    made = {}

    def get(arch="arm64"):
        why = _missing(arch)
        if why:
            pytest.skip(why)
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            pytest.skip("updater provision needs root (or fakeroot): the repository keeps each file's owner")
        if arch not in made:
            upgrades = arch == "arm64"
            base = str(tmp_path_factory.mktemp("release-%s" % arch))
            rel = server.Release(arch, os.path.join(base, "server"))
            rel.release("v1")
            if upgrades:
                rel.release("v2")
            made[arch] = server.DeviceImages(rel, "v1", os.path.join(base, "device"), with_updates=upgrades)
        return made[arch]

    return get


def pytest_terminal_summary(terminalreporter):
    if BOOT_TIMES:
        terminalreporter.section("QEMU boot times (seconds since QEMU started)")
        for line in BOOT_TIMES:
            terminalreporter.write_line(line)
