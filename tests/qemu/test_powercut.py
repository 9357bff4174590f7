"""Scenario 4 of the QEMU issue: power cuts during an in-guest upgrade, under real U-Boot.

Each cut starts from a fresh copy of the provisioned device (v1 deployed as A, v2 published on
the "updates" disk). The guest runs `updater upgrade` (or, for the last cut, B's `updater
boot`) with the test-only UPDATER_TRACE_OPS=stop:N:TEXT (updater/optrace.py): it prints the
chosen durable operation and sleeps before doing it, and the test kills QEMU with SIGKILL at
that moment - nothing the guest had not synced survives, the flash holds what was programmed.
Then QEMU starts again on the same disk and flash files and the test checks that
- the machine boots a whole deployment, A or B (never neither), and `updater boot` says in
  plain words what it found and repaired;
- a new `updater upgrade` succeeds, U-Boot tries B, B's `updater boot` marks it good;
- status shows B running and known-good with A as rollback target, the env and
  boot/updater-env.txt agree, and `updater fsck` (objects and deployments) is clean.
Two cuts run at a time (two VMs on two cores).
"""

import re
import threading
import time

import pytest

import upgradeflow as flow

pytestmark = pytest.mark.qemu
ARCH = "arm64"
CFI_PROGRAM = "=0x00000040"  # write_phys of the CFI "program word" command (updater/cfiflash.py)
CFI_ERASE = "=0x00000020"  # ... of the "block erase" command (the first step of an env write)


class Cut:
    def __init__(self, key, during, spec, stop_line, boots, says=(), uboot=()):
        self.key = key
        self.during = during  # "upgrade" or "boot" (B's first updater boot)
        self.spec = spec  # UPDATER_TRACE_OPS
        self.stop_line = stop_line  # regex the stopped operation's line must match
        self.boots = boots  # "A" or "B": what the next boot must come up on
        self.says = says  # what `updater boot` must report after the cut
        self.uboot = uboot  # what U-Boot must print after the cut


ENV_LOST = (r"\*\*\* Warning - bad CRC, using default environment",
            r"upd_current is not set \(environment lost\?\); reading /boot/updater-env\.txt")
# What `updater boot` says after a cut is printed in the report; it is asserted only where the
# outcome does not depend on whether ext4 had committed its journal before the cut.
CUTS = [
    Cut("pull: delta objects half written to repo/tmp", "upgrade", "stop:40:/updater/repo/tmp/",
        r"write /sysroot/updater/repo/tmp/\.tmp-", "A"),
    Cut("pull: objects half renamed into the store, ref not moved", "upgrade",
        "stop:30:rename /sysroot/updater/repo/objects/", r"rename /sysroot/updater/repo/objects/", "A"),
    Cut("deploy: checkout half done", "upgrade", "stop:600:/updater/deploy/.tmp-",
        r"(link|mkdir|write) /sysroot/updater/deploy/\.tmp-", "A"),
    Cut("deploy: complete, env not yet written (before the block erase)", "upgrade", "stop:1:" + CFI_ERASE,
        r"write_phys /dev/mem@0x4000000=0x00000020$", "A",
        says=("removed deployment \\S+: an interrupted deploy built it but never staged it",)),
    Cut("env write: erased, nothing programmed", "upgrade", "stop:1:" + CFI_PROGRAM,
        r"write_phys /dev/mem@0x4000000=0x00000040$", "A", uboot=ENV_LOST,
        says=("the U-Boot environment was unusable", "rewrote the environment")),
    Cut("env write: torn half-way", "upgrade", "stop:600:" + CFI_PROGRAM,
        r"write_phys /dev/mem@0x4000[0-9a-f]+=0x00000040$", "A", uboot=ENV_LOST,
        says=("the U-Boot environment was unusable", "rewrote the environment")),
    Cut("mark-good env write in B's updater boot: torn", "boot", "stop:300:" + CFI_PROGRAM,
        r"write_phys /dev/mem@0x4000[0-9a-f]+=0x00000040$", "B", uboot=ENV_LOST,
        says=("the U-Boot environment was unusable", "the known-good deployment boot/updater-env.txt names",
              "rewrote the environment")),
]


def cut_and_recover(rig, dev, cut, workdir, index):
    """One cut on a fresh device; returns a line for the report. Raises on any failure."""
    rel = dev.release
    a, b = dev.deployment, rel.deployment("v2")
    flash, disks = dev.fresh(workdir)
    log = "console-cut%d.log" % index
    m = rig.vm(ARCH, flash, disks, name="cut%d" % index, log=log)
    name, _, rc, said = flow.boot_to_shell(m, label=" A")
    assert (name, rc) == (a, 0), said
    flow.mount_updates(m)
    t0 = time.monotonic()
    if cut.during == "upgrade":
        m.send("UPDATER_TRACE_OPS='%s' updater --sysroot /sysroot upgrade; echo UPGRADE-ENDED-$?\n" % cut.spec)
    else:
        flow.upgrade(m)
        m.sh("echo '%s' > /sysroot/updater/test-trace-boot && sync" % cut.spec)
        m.send("reboot -f\n")
        m.expect(r"updater: trial boot of %s: attempt 1 of 3" % re.escape(b), 120, mark="u-boot tries B")
    _, hit = m.expect([r"updater-op (\d+) (\S+ \S+)\r?\n", r"UPGRADE-ENDED-\d", r"UPDATER-QEMU: updater boot exit"], 240)
    if not hit.group(0).startswith(b"updater-op"):
        raise AssertionError("the traced run finished without reaching %s:\n%s" % (cut.spec, m.tail()))
    op = hit.group(2).decode()
    assert re.search(cut.stop_line, op), "stopped at %s, expected %s" % (op, cut.stop_line)
    m.expect(r"updater-op stopped", 10)
    m.kill()  # the power cut
    cut_at = "op %s (%s) after %.1fs" % (hit.group(1).decode(), op, time.monotonic() - t0)

    # Power back on: the same disk and flash files.
    m = rig.vm(ARCH, flash, disks, name="cut%d-after" % index, log=log)
    for pattern in cut.uboot:
        m.expect(pattern, 60)
    name, version, rc, said = flow.boot_to_shell(m, label=" after cut")
    want = a if cut.boots == "A" else b
    assert name == want, "after the cut (%s) the guest booted %s, expected %s (%s)" % (cut.key, name, cut.boots, want)
    assert rc == 0, "updater boot after the cut failed:\n%s" % said
    for pattern in cut.says:
        assert re.search(pattern, said), "updater boot did not say %r after the cut:\n%s" % (pattern, said)

    # A new upgrade succeeds (or there is nothing left to do) and B is marked good.
    flow.mount_updates(m)
    rc, out = flow.upgrade(m)
    if name == a:
        assert "Deployed version v2" in out, out
        trial = flow.env(m, ARCH, "upd_trial")["upd_trial"]
        assert trial.startswith(rel.commits["v2"] + "."), trial
        flow.reboot_into_trial(m, trial)
    else:
        assert "already runs the newest version" in out, out
    flow.check_settled(m, ARCH, rel, a)
    rig.record(m, "[%s]" % cut.key)
    m.kill()
    return "%s: cut at %s; came back on %s; %s" % (cut.key, cut_at, cut.boots, " / ".join(
        line.strip() for line in said.split("\n") if line.strip() and not line.startswith("UPDATER-QEMU")))


def test_power_cuts_during_an_in_guest_upgrade(rig, tmp_path, provisioned):
    dev = provisioned(ARCH)
    pending = sorted(enumerate(CUTS), key=lambda item: item[1].during != "boot")  # the longest first
    lock = threading.Lock()
    results, failures = {}, {}

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                index, cut = pending.pop(0)
            try:
                results[index] = cut_and_recover(rig, dev, cut, str(tmp_path / ("cut%d" % index)), index)
            except Exception as err:  # noqa: BLE001 - collected and reported below, per cut
                failures[index] = "%s: %s: %s (console: %s)" % (cut.key, type(err).__name__, err,
                                                                 tmp_path / ("console-cut%d.log" % index))

    threads = [threading.Thread(target=worker) for _ in range(2)]  # at most two VMs at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index in sorted(results):
        rig.note(results[index])
    assert not failures, "\n\n".join(failures[i] for i in sorted(failures))
    assert len(results) == len(CUTS)
