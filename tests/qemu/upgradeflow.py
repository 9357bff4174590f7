"""Steps of an in-guest upgrade that the QEMU scenarios share (test_upgrade.py, test_powercut.py).

The device is a provisioned image (qemu/server.py: release v1 deployed as A, the published
repository with v2 on a second virtio disk labelled "updates"). Every step talks to the guest
through its serial console (qemu/vm.py, pyserial socket://) and checks what it says.
"""

import json
import re

from qemu.sysroot import BOARDS


def boot_to_shell(m, timeout=120, label=""):
    """Wait for a boot to reach the guest shell; returns (deployment mounted, version, exit of
    `updater boot`, its console text). Fails if the early boot never mounts a deployment."""
    _, hit = m.expect([r"updater-init: booting deployment (\S+) from", r"updater-init: cannot boot a deployment"],
                      timeout, mark="early boot%s" % label)
    if not hit.group(0).startswith(b"updater-init: booting"):
        raise AssertionError("%s: the early boot found no deployment to boot:\n%s" % (m.name, m.tail()))
    name = hit.group(1).decode()
    _, v = m.expect(r"UPDATER-QEMU: init version=(\S+) deployment=%s" % re.escape(name), timeout,
                    mark="init%s" % label)
    start = m.cursor
    _, rc = m.expect(r"UPDATER-QEMU: updater boot exit=(\d+)", timeout, mark="updater boot%s" % label)
    with m.lock:
        said = m.buf[start:rc.start()].decode("utf-8", "replace").replace("\r", "")
    m.expect(r"UPDATER-QEMU: ready", timeout, mark="ready%s" % label)
    m.expect(r"guest# ", timeout)
    m.sh("dmesg -n 1")  # kernel messages would interleave with command output on the console
    return name, v.group(1).decode(), int(rc.group(1)), said


def mount_updates(m):
    """Mount the published repository's disk (label "updates") read-only on /mnt/updates."""
    m.sh("mount -o ro $(findfs LABEL=updates) /mnt/updates")


def upgrade(m, trace="", timeout=240, check=True):
    """`updater upgrade` in the guest (stderr, with progress and any trace, into /run/upgrade.err)."""
    env = "UPDATER_TRACE_OPS=%s " % trace if trace else ""
    return m.sh("%supdater --sysroot /sysroot upgrade 2>/run/upgrade.err" % env, timeout, check)


def json_of(text):
    return json.loads(text[text.index("{"):text.rindex("}") + 1])


def status(m):
    return json_of(m.sh("updater --sysroot /sysroot status --json 2>/dev/null", 120)[1])


def env(m, arch, *names):
    """The named variables of the U-Boot env as the guest reads it from flash (absent: left out)."""
    doc = json_of(m.sh("updater --board %s env print --json 2>/dev/null" % BOARDS[arch], 120)[1])
    return dict((k, v) for k, v in doc["vars"].items() if k in names)


def fallback_current(m):
    """upd_current of /boot/updater-env.txt on the sysroot."""
    return m.sh("sed -n 's/^upd_current=//p' /sysroot/boot/updater-env.txt")[1].strip()


def short(name):
    """A deployment NAME as the updater's plain-text output shows it (12 hex digits and serial)."""
    return name[:12] + name[64:]


def reboot_into_trial(m, trial, timeout=120):
    """reboot -f; U-Boot tries the staged deployment; its `updater boot` marks it good."""
    m.send("reboot -f\n")
    m.expect(r"updater: trial boot of %s: attempt 1 of 3" % re.escape(trial), timeout, mark="u-boot tries B")
    name, version, rc, said = boot_to_shell(m, timeout, " B")
    assert name == trial, "U-Boot staged %s but the guest booted %s" % (trial, name)
    assert rc == 0 and "trial %s is healthy: it is now the known-good deployment" % short(trial) in said, said
    return version


def check_settled(m, arch, rel, old):
    """After a completed upgrade: running v2 as the known-good deployment, the old deployment A
    the rollback target, the env and boot/updater-env.txt agreeing, and fsck clean."""
    booted = m.sh("cat /run/updater/booted")[1]
    assert booted.startswith(rel.commits["v2"] + "."), "running %s, expected a deployment of v2" % booted
    st = status(m)
    rows = dict((r["name"], r) for r in st["deployments"])
    assert rows[booted]["booted"] and rows[booted]["current"] and rows[booted]["version"] == "v2", rows[booted]
    assert [r["name"] for r in st["deployments"] if r["rollback"]] == [old], st["deployments"]
    assert st["env_ok"] and not st["staged"], st
    e = env(m, arch, "upd_current", "upd_trial", "upd_count", "upd_failed")
    assert e.get("upd_current") == booted and not e.get("upd_trial") and not e.get("upd_failed"), e
    assert e.get("upd_count") == "0", e
    assert fallback_current(m) == booted
    m.sh("updater --sysroot /sysroot fsck 2>/dev/null", 300)  # objects re-hashed, deployments checked
    return st
