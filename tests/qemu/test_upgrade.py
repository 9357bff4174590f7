"""Scenario 2 of the QEMU issue: an upgrade inside the guest, under real U-Boot.

The device image is made by `updater provision` (v1 deployed as A); the published repository
(v1, v2, a v1 -> v2 delta, signed summary) sits on a second virtio disk, the guest has no
network. Inside the guest `updater upgrade` pulls v2 from file:///mnt/updates/repo, deploys it
and writes the U-Boot environment through the CFI flash at its physical address (/dev/mem);
after `reboot -f` U-Boot tries B, B's early boot runs `updater boot`, which marks it good, and
`updater status` shows B running and A as the rollback target.
"""

import re

import pytest

import upgradeflow as flow
from qemu import sysroot

pytestmark = pytest.mark.qemu


def test_upgrade_inside_the_guest(rig, tmp_path, provisioned):
    arch = "arm64"
    dev = provisioned(arch)
    rel = dev.release
    a = dev.deployment
    flash, disks = dev.fresh(str(tmp_path / "run"))
    m = rig.vm(arch, flash, disks)
    m.expect(r"updater: booting %s" % re.escape(a), 30, mark="u-boot chose A")
    name, version, rc, said = flow.boot_to_shell(m, label=" A")
    assert (name, version, rc) == (a, "v1", 0), said

    flow.mount_updates(m)
    rc, out = flow.upgrade(m, trace="1")  # every durable operation listed in /run/upgrade.err
    b = rel.deployment("v2")
    assert "Pulled %s version v2" % rel.branch in out and re.search(r"using (a )?delta", out), out
    assert "Deployed version v2" in out and "It boots at the next restart, on trial" in out, out
    # What the upgrade did, counted from its trace (reported in the summary).
    _, counts = m.sh("awk '$1 == \"updater-op\" { n++; p = $4; "
                     "if ($3 == \"write_phys\") e++; else if (p ~ /\\/updater\\/deploy\\//) d++; "
                     "else if (p ~ /\\/updater\\/(repo|tmp)\\//) r++; else s++ } "
                     "END { printf \"%d %d %d %d %d\", n, r, d, e, s }' /run/upgrade.err")
    total, pulled, deployed, env_ops, other = [int(x) for x in counts.split()]
    assert pulled > 0 and deployed > 0 and env_ops > 0 and total == pulled + deployed + env_ops + other
    rig.note("in-guest upgrade v1 -> v2: %d durable operations: %d repository/pull, %d deployment, "
                       "%d CFI flash (env) words, %d state" % (total, pulled, deployed, env_ops, other))

    # Staged for a trial, the env written from Linux; the known-good deployment unchanged.
    e = flow.env(m, arch, "upd_current", "upd_trial", "upd_count", "upd_limit")
    assert e == {"upd_current": a, "upd_trial": b, "upd_count": "0", "upd_limit": "3"}, e
    assert flow.fallback_current(m) == a
    # The new deployment: a hard-link farm with a private copy of /etc and an executable init.
    dep = "/sysroot/updater/deploy/%s" % b
    assert m.sh("stat -c %%h %s/etc/updater-qemu.conf" % dep)[1] == "1"
    assert int(m.sh("stat -c %%h %s/usr/bin/python3.11" % dep)[1]) >= 3  # object, A, B
    m.sh("test -x %s/sbin/init && test -f %s/boot/vmlinuz" % (dep, dep))

    version = flow.reboot_into_trial(m, b)
    assert version == "v2"
    assert m.sh("cat /etc/updater-qemu.conf")[1].endswith("greeting=hello from v2")
    st = flow.check_settled(m, arch, rel, a)
    row = [r for r in st["deployments"] if r["name"] == a][0]
    assert row["version"] == "v1" and row["good"] and not row["failed"]
    _, text = m.sh("updater --sysroot /sysroot status 2>/dev/null")
    assert re.search(r"\* %s\s+version v2\s+running, known-good" % re.escape(b[:12] + ".0"), text), text
    assert re.search(r"%s\s+version v1\s+rollback target" % re.escape(a[:12] + ".0"), text), text
    rig.record(m)
    m.kill()
    after = sysroot.read_flash_env(flash).variables
    assert after["upd_current"] == b and not after.get("upd_trial") and after["upd_count"] == "0"
    assert after["serial#"] == "QEMU0001"  # the provisioned per-unit value survived every write

