"""Scenarios 1, 3 and 5 of the QEMU issue, and the bad-input cases of U-Boot's path.

Each test assembles a sysroot (repository + deployments made with the repository commands),
its GPT disk image and the env flash bank, boots real U-Boot + Debian's ARM kernel under QEMU,
and talks to the console through pyserial's socket:// transport.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from qemu import sysroot

pytestmark = pytest.mark.qemu
BOARD = {"arm64": "qemu-arm64", "armhf": "qemu-arm"}


def host_has(command):
    out = subprocess.run([sys.executable, "-m", "updater", "--help"], stdout=subprocess.PIPE,
                         cwd=sysroot.TOP).stdout.decode()
    return re.search(r"^  %s\b" % re.escape(command), out, re.M) is not None


def make(rig, tmp_path, arch, versions, current, trial=None, env=None, edit=None):
    """Device with ``versions`` committed and deployed; returns (device, names, flash, disk)."""
    d = rig.device(arch)
    names = {}
    for v in versions:
        d.commit(v, broken=v.endswith("broken"))
        names[v] = d.deploy(v)
    d.write_fallback(names[current])
    if edit:
        edit(d, names)
    disk = d.disk(str(tmp_path / "disk.img"))
    variables = sysroot.env_vars(arch, upd_current=names[current], upd_trial=names.get(trial))
    variables.update(env or {})
    flash = sysroot.write_flash(str(tmp_path / "flash.img"), variables)
    return d, names, flash, disk


def wait_ready(m, version, name, timeout=90):
    m.expect(r"UPDATER-QEMU: init version=%s deployment=%s" % (re.escape(version), re.escape(name)),
             timeout, mark="init %s" % version)
    m.expect(r"UPDATER-QEMU: ready", timeout, mark="ready")
    m.expect(r"guest# ", timeout, mark="shell")


def guest_env(m, arch, *names):
    _, out = m.sh("updater --board %s env print --json %s" % (BOARD[arch], " ".join(names)))
    doc = json.loads(out[out.index("{"):])
    return doc["vars"]


def check_booted(m, arch, name, version):
    """Inside the guest: the mounted deployment, the read-only root, writable /etc and /var."""
    assert m.sh("cat /run/updater/booted")[1] == name
    assert m.sh("cat /usr/share/updater-qemu/version")[1] == version
    rc, out = m.sh("touch /usr/share/probe", check=False)
    assert rc != 0 and "Read-only file system" in out
    m.sh("echo probe > /etc/probe && echo probe > /var/probe && test -d /sysroot/updater/deploy/%s" % name)
    if host_has("status"):
        rc, out = m.sh("updater --sysroot /sysroot status --json")
        assert name in out


@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_uboot_boots_the_current_deployment(rig, tmp_path, arch):
    """Scenario 1 (arm64) and 5 (32-bit ARM, cortex-a15): U-Boot reads the env updater wrote
    and boots deployment A through the early-boot step."""
    _, names, flash, disk = make(rig, tmp_path, arch, ["v1"], "v1")
    a = names["v1"]
    m = rig.vm(arch, flash, [disk])
    m.expect(r"U-Boot 2023", 30, mark="u-boot")
    m.expect(r"updater: booting %s" % re.escape(a), 30, mark="script chose A")
    m.expect(r"Starting kernel", 30, mark="kernel")
    m.expect(r"updater-init: booting deployment %s" % re.escape(a), 60, mark="early boot")
    wait_ready(m, "v1", a)
    check_booted(m, arch, a, "v1")
    assert guest_env(m, arch, "upd_current")["upd_current"] == a
    rig.record(m, "[%s]" % arch)


def test_broken_trial_rolls_back_after_the_attempt_limit(rig, tmp_path):
    """Scenario 3, U-Boot side: v3's init fails before it is marked good; U-Boot counts each
    attempt in the env before booting it, and after upd_limit attempts boots A by itself."""
    arch = "arm64"
    _, names, flash, disk = make(rig, tmp_path, arch, ["v1", "v3-broken"], "v1", trial="v3-broken",
                                 env={"upd_limit": "2"})
    a, b = names["v1"], names["v3-broken"]
    m = rig.vm(arch, flash, [disk])
    for i in (1, 2):
        m.expect(r"trial boot of %s: attempt %d of 2" % (re.escape(b), i), 60, mark="attempt %d" % i)
        m.expect(r"UPDATER-QEMU: broken build, failing", 60, mark="v3 failed %d" % i)
    m.expect(r"used its 2 attempts \(upd_count=2\): rolling back to %s" % re.escape(a), 60, mark="rollback")
    m.expect(r"updater: booting %s" % re.escape(a), 30)
    m.expect(r"UPDATER-QEMU: init version=v1 deployment=%s" % re.escape(a), 60, mark="init v1")
    # `updater boot` (run by init) reads upd_failed, reports the rollback and clears it.
    m.expect(r"the boot script gave up on %s and booted %s" % (re.escape(b), re.escape(a)), 60,
             mark="updater boot reported")
    m.expect(r"UPDATER-QEMU: ready", 60, mark="ready")
    m.expect(r"guest# ", 60, mark="shell")
    check_booted(m, arch, a, "v1")
    env = guest_env(m, arch)
    assert env.get("upd_current") == a
    assert not env.get("upd_trial") and not env.get("upd_failed") and env.get("upd_count") == "0"
    _, status = m.sh("updater --sysroot /sysroot status --json")
    assert b in status, "status does not mention the failed trial"
    m.sh("updater --repo /sysroot/updater/repo fsck", timeout=120)
    rig.record(m)
    m.kill()
    after = sysroot.read_flash_env(flash).variables
    assert after["upd_current"] == a and not after.get("upd_trial") and after["upd_count"] == "0"


def test_corrupt_boot_scr_copy_is_skipped(rig, tmp_path):
    """Bad input: the first boot.scr copy U-Boot finds fails its CRC; the second one boots A."""
    def corrupt(d, names):
        path = os.path.join(d.root, "boot.scr")
        with open(path, "r+b") as f:
            f.seek(200)
            f.write(b"#corrupted#")

    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1"], "v1", edit=corrupt)
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"Found U-Boot script /boot\.scr", 30)
    m.expect(r"SCRIPT FAILED", 30, mark="bad copy rejected")
    m.expect(r"Found U-Boot script /boot/boot\.scr", 30)
    m.expect(r"updater: booting %s" % re.escape(names["v1"]), 30, mark="second copy")
    wait_ready(m, "v1", names["v1"])
    rig.record(m)


def test_env_with_bad_crc_falls_back_to_the_sysroot_file(rig, tmp_path):
    """Bad input: the env fails its CRC, U-Boot runs on defaults; the script recovers the
    known-good deployment from /boot/updater-env.txt and boots it (without writing the env)."""
    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1"], "v1")
    with open(flash, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    before = open(flash, "rb").read(sysroot.ENV_SIZE)
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"bad CRC, using default environment", 30, mark="bad CRC")
    m.expect(r"upd_current is not set .*reading /boot/updater-env\.txt", 60, mark="recovery")
    m.expect(r"updater: booting %s" % re.escape(names["v1"]), 30)
    wait_ready(m, "v1", names["v1"])
    rig.record(m)
    m.kill()
    assert open(flash, "rb").read(sysroot.ENV_SIZE) == before


def test_trial_without_kernel_falls_back_to_current(rig, tmp_path):
    """Bad input: the trial deployment lacks its kernel; U-Boot counts the attempt and boots A."""
    def drop_kernel(d, names):
        os.unlink(os.path.join(d.root, "updater", "deploy", names["v2"], "boot", "vmlinuz"))

    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1", "v2"], "v1", trial="v2", edit=drop_kernel)
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"trial boot of %s: attempt 1 of 3" % re.escape(names["v2"]), 30)
    m.expect(r"deployment %s has no boot/vmlinuz" % re.escape(names["v2"]), 30, mark="no kernel")
    m.expect(r"updater: booting %s" % re.escape(names["v1"]), 30, mark="fallback")
    wait_ready(m, "v1", names["v1"])
    assert guest_env(m, "arm64", "upd_count")["upd_count"] == "1"
    rig.record(m)


def test_early_boot_falls_back_when_the_deployment_is_incomplete(rig, tmp_path):
    """Bad input: the trial's kernel loads but its tree has no /sbin/init; the early-boot step
    says so and mounts the fallback deployment U-Boot named (A)."""
    def drop_init(d, names):
        os.unlink(os.path.join(d.root, "updater", "deploy", names["v2"], "sbin", "init"))

    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1", "v2"], "v1", trial="v2", edit=drop_init)
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"updater-init: deployment %s is missing or incomplete" % re.escape(names["v2"]), 60)
    m.expect(r"updater-init: falling back to deployment %s" % re.escape(names["v1"]), 10, mark="fallback")
    wait_ready(m, "v1", names["v1"])
    assert m.sh("cat /run/updater/missing")[1] == names["v2"]
    rig.record(m)
