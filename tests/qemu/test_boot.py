"""Scenarios 1, 3 and 5 of the QEMU issue, and the bad-input cases of U-Boot's path.

Scenarios 1 and 5 boot an image made by `updater provision` (qemu/server.py). Scenario 3 and
the bad-input cases need states provisioning does not make (a staged trial, a broken build, a
damaged file), so they assemble the sysroot by hand (qemu/sysroot.py: repository commands,
checkouts with /etc copied, the env flash written from the board's default env + the contract).
Each boots real U-Boot + Debian's ARM kernel under QEMU and talks to the console through
pyserial's socket:// transport.
"""

import json
import os
import re

import pytest

from qemu import sysroot

pytestmark = pytest.mark.qemu

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
    """Wait for the OS init of ``name`` and its shell; returns what `updater boot` said there."""
    m.expect(r"UPDATER-QEMU: init version=%s deployment=%s" % (re.escape(version), re.escape(name)),
             timeout, mark="init %s" % version)
    start = m.cursor
    _, done = m.expect(r"UPDATER-QEMU: (updater boot exit=\d+|updater boot not available)", timeout)
    with m.lock:
        said = m.buf[start:done.start()].decode("utf-8", "replace").replace("\r", "")
    m.expect(r"UPDATER-QEMU: ready", timeout, mark="ready")
    m.expect(r"guest# ", timeout, mark="shell")
    return said


def said_plainly(said, *patterns):
    """Assert the guest-side `updater boot` reported each pattern (regex) in its output."""
    for pattern in patterns:
        assert re.search(pattern, said), "updater boot did not say %r; it said:\n%s" % (pattern, said)


def short(name):
    return re.escape(name[:12]) + r"\S*"


def guest_env(m, arch, *names):
    _, out = m.sh("updater --board %s env print --json %s" % (sysroot.BOARDS[arch], " ".join(names)))
    doc = json.loads(out[out.index("{"):])
    return doc["vars"]


def check_booted(m, arch, name, version):
    """Inside the guest: the mounted deployment, the read-only root, writable /etc and /var."""
    assert m.sh("cat /run/updater/booted")[1] == name
    assert m.sh("cat /usr/share/updater-qemu/version")[1] == version
    rc, out = m.sh("touch /usr/share/probe", check=False)
    assert rc != 0 and "Read-only file system" in out
    m.sh("echo probe > /etc/probe && echo probe > /var/probe && test -d /sysroot/updater/deploy/%s" % name)
    rc, out = m.sh("updater --sysroot /sysroot status --json")
    assert name in out


@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_uboot_boots_the_current_deployment(rig, tmp_path, arch, provisioned):
    """Scenario 1 (arm64) and 5 (32-bit ARM, cortex-a15): an image made by `updater provision`
    (disk + env flash bank); U-Boot reads the env the updater wrote (with the unit's serial#),
    runs the first boot.scr copy and boots deployment A through the early-boot step; the
    provisioned repository passes the guest's fsck."""
    dev = provisioned(arch)
    a = dev.deployment
    flash, disks = dev.fresh(str(tmp_path / "run"))
    m = rig.vm(arch, flash, disks)
    m.expect(r"U-Boot 2023", 30, mark="u-boot")
    m.expect(r"Found U-Boot script /boot\.scr", 30, mark="boot.scr")
    m.expect(r"updater: booting %s" % re.escape(a), 30, mark="script chose A")
    m.expect(r"Starting kernel", 30, mark="kernel")
    m.expect(r"updater-init: booting deployment %s" % re.escape(a), 60, mark="early boot")
    wait_ready(m, "v1", a)
    check_booted(m, arch, a, "v1")
    env = guest_env(m, arch, "upd_current", "serial#")
    assert env["upd_current"] == a and env["serial#"] == "QEMU0001"
    m.sh("updater --repo /sysroot/updater/repo fsck", timeout=180)
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
    m.expect(r"the boot script gave up on %s and booted %s" % (short(b), short(a)), 60,
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


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_or_missing_boot_scr_copy_is_skipped_and_restored(rig, tmp_path, damage):
    """Bad input: the first boot.scr copy U-Boot looks for fails its CRC (or is missing); the
    second one boots A, and the guest's `updater boot` says so and restores the first copy."""
    def spoil(d, names):
        path = os.path.join(d.root, "boot.scr")
        if damage == "missing":
            os.unlink(path)
            return
        with open(path, "r+b") as f:
            f.seek(200)
            f.write(b"#corrupted#")

    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1"], "v1", edit=spoil)
    m = rig.vm("arm64", flash, [disk])
    if damage == "corrupt":
        m.expect(r"Found U-Boot script /boot\.scr", 30)
        m.expect(r"SCRIPT FAILED", 30, mark="bad copy rejected")
    _, first = m.expect(r"Found U-Boot script (/boot\.scr|/boot/boot\.scr)", 30)
    assert first.group(1) == b"/boot/boot.scr"
    m.expect(r"updater: booting %s" % re.escape(names["v1"]), 30, mark="second copy")
    said = wait_ready(m, "v1", names["v1"])
    said_plainly(said, r"the boot script copy /boot\.scr was %s; restored it from /boot/boot\.scr"
                 % ("missing" if damage == "missing" else r"damaged \(data CRC 0x[0-9a-f]+, expected 0x[0-9a-f]+\)"))
    m.sh("cmp /sysroot/boot.scr /sysroot/boot/boot.scr")
    rig.record(m, "[%s]" % damage)


def test_env_with_bad_crc_falls_back_to_the_sysroot_file(rig, tmp_path):
    """Bad input: the env fails its CRC, U-Boot runs on defaults; the script recovers the
    known-good deployment from /boot/updater-env.txt and boots it (without writing the env);
    the guest's `updater boot` says so and rewrites the env with it as upd_current."""
    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1"], "v1")
    with open(flash, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    a = names["v1"]
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"bad CRC, using default environment", 30, mark="bad CRC")
    m.expect(r"upd_current is not set .*reading /boot/updater-env\.txt", 60, mark="recovery")
    m.expect(r"updater: booting %s" % re.escape(a), 30)
    said = wait_ready(m, "v1", a)
    said_plainly(said, r"the U-Boot environment was unusable \(the only copy fails its CRC",
                 r"U-Boot ran on its defaults and booted %s, the known-good deployment boot/updater-env.txt names"
                 % short(a), r"rewrote the environment from the board's defaults with %s as the known-good" % short(a))
    rig.record(m)
    m.kill()
    env = sysroot.read_flash_env(flash)
    assert env.valid() and env.variables["upd_current"] == a and env.variables["upd_count"] == "0"
    assert env.variables["bootcmd"] == "run distro_bootcmd"  # the board's defaults came back too


def test_trial_without_kernel_falls_back_to_current(rig, tmp_path):
    """Bad input: the trial deployment lacks its kernel; U-Boot counts the attempt and boots A."""
    def drop_kernel(d, names):
        os.unlink(os.path.join(d.root, "updater", "deploy", names["v2"], "boot", "vmlinuz"))

    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1", "v2"], "v1", trial="v2", edit=drop_kernel)
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"trial boot of %s: attempt 1 of 3" % re.escape(names["v2"]), 30)
    m.expect(r"deployment %s has no boot/vmlinuz" % re.escape(names["v2"]), 30, mark="no kernel")
    m.expect(r"updater: booting %s" % re.escape(names["v1"]), 30, mark="fallback")
    said = wait_ready(m, "v1", names["v1"])
    said_plainly(said, r"trial %s did not start \(attempt 1 of 3\); running %s" % (short(names["v2"]), short(names["v1"])))
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
    said = wait_ready(m, "v1", names["v1"])
    # The kernel command line names v2; `updater boot` trusts /run/updater/booted (v1) instead.
    said_plainly(said, r"Booted %s\." % short(names["v1"]),
                 r"trial %s did not start \(attempt 1 of 3\); running %s" % (short(names["v2"]), short(names["v1"])))
    assert m.sh("cat /run/updater/missing")[1] == names["v2"]
    rig.record(m)


def test_early_boot_accepts_an_absolute_init_symlink(rig, tmp_path):
    """A deployment whose /sbin/init is an absolute symlink, as Debian's systemd-sysv ships it
    (/sbin/init -> /lib/systemd/systemd): it names a file of the deployment once that is /, not
    of the initramfs, so the early boot must not take it for a missing init."""
    def init_as_symlink(d, names):
        dep = os.path.join(d.root, "updater", "deploy", names["v1"])
        os.rename(os.path.join(dep, "sbin", "init"), os.path.join(dep, "usr", "lib", "updater-qemu-init"))
        os.symlink("/usr/lib/updater-qemu-init", os.path.join(dep, "sbin", "init"))

    _, names, flash, disk = make(rig, tmp_path, "arm64", ["v1"], "v1", edit=init_as_symlink)
    m = rig.vm("arm64", flash, [disk])
    m.expect(r"updater-init: booting deployment %s" % re.escape(names["v1"]), 60, mark="early boot")
    wait_ready(m, "v1", names["v1"])
    assert m.sh("readlink /sbin/init")[1] == "/usr/lib/updater-qemu-init"
    rig.record(m)
