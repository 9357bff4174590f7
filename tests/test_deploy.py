"""Deployments: building, staging, /etc merge, bad input, lock, free space, EMLINK, fsck of deployments."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest

from crashharness import run_cli
from devicekit import BRANCH, commit, make_device, make_uboot_device, sample, write

from updater import fs
from updater.sysroot import Sysroot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def device(tmp_path):
    """A device running v1 (deployed, booted, good) with v2 committed into its repository."""
    dev = make_device(str(tmp_path))
    dev.v1 = commit(dev, sample(str(tmp_path / "v1"), "1"), "1")
    rc, out, err = dev.run(["deploy", BRANCH])
    assert rc == 0, err
    dev.old, (rc, out, err) = dev.reboot()
    assert rc == 0, err
    dev.v2 = commit(dev, sample(str(tmp_path / "v2"), "2"), "2")
    dev.tmp = tmp_path
    return dev


def jrun(dev, *argv):
    rc, out, err = dev.run(list(argv) + ["--json"])
    return rc, json.loads(out) if out.strip() else None, err


def deployed(dev):
    return sorted(n for n in os.listdir(dev.deploy_dir()))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_first_deploy_becomes_current_and_hardlinks_objects(device):
    contract = device.contract()
    assert contract["current"] == device.old and not contract["trial"]
    assert device.old.startswith(device.v1 + ".0")
    dep = os.path.join(device.deploy_dir(), device.old)
    repo = Sysroot(device.path).repo()
    lib = os.stat(os.path.join(dep, "usr/lib/libapp.so.1"))
    assert lib.st_nlink >= 2  # shared with the repository's object
    assert os.stat(os.path.join(dep, "etc/motd")).st_nlink == 1  # /etc is copied
    empty = os.stat(os.path.join(dep, "var/lib/.keep"))
    assert empty.st_size == 0 and empty.st_nlink == 1  # zero-size files are created, never linked
    assert os.path.islink(os.path.join(dep, "sbin/libapp"))
    assert repo.mode == "bare"


def test_deploy_stages_a_trial_and_reboot_marks_it_good(device):
    rc, d, err = jrun(device, "deploy", BRANCH)
    assert rc == 0, err
    name = d["deployment"]
    assert name == device.v2 + ".0" and d["staged"] and d["merged_from"] == device.old
    contract = device.contract()
    assert contract["trial"] == name and contract["current"] == device.old and contract["count"] == 0
    rc, st, _ = jrun(device, "status")
    rows = dict((r["name"], r) for r in st["deployments"])
    assert rows[name]["staged"] and rows[device.old]["booted"] and rows[device.old]["current"]
    assert st["staged"] == name and st["booted"] == device.old
    booted, (rc, out, err) = device.reboot()
    assert booted == name and rc == 0, err
    assert json.loads(out)["action"] == "marked-good"
    contract = device.contract()
    assert contract["current"] == name and not contract["trial"]
    rc, st, _ = jrun(device, "status")
    assert st["rollback"] == device.old and st["current"] == name
    assert device.fsck()[0] == 0


def test_etc_three_way_merge(device):
    etc = os.path.join(device.deploy_dir(), device.old, "etc")
    with open(os.path.join(etc, "hostname"), "w") as f:  # changed here only: kept
        f.write("mine\n")
    with open(os.path.join(etc, "motd"), "w") as f:  # changed here AND in v2: conflict, local kept
        f.write("local motd\n")
    os.remove(os.path.join(etc, "empty.conf"))  # deleted here: stays deleted
    os.makedirs(os.path.join(etc, "local.d"))
    with open(os.path.join(etc, "local.d", "extra"), "w") as f:  # added here: kept
        f.write("x\n")
    os.chmod(os.path.join(etc, "app"), 0o700)  # directory mode changed here: kept
    rc, d, err = jrun(device, "deploy", BRANCH)
    assert rc == 0, err
    new = os.path.join(device.deploy_dir(), d["deployment"], "etc")
    assert read(os.path.join(new, "hostname")) == b"mine\n"
    assert read(os.path.join(new, "motd")) == b"local motd\n"
    assert not os.path.exists(os.path.join(new, "empty.conf"))
    assert read(os.path.join(new, "local.d", "extra")) == b"x\n"
    assert read(os.path.join(new, "app", "app.conf")) == b"level=2\n"  # unchanged here: new default
    assert os.stat(os.path.join(new, "app")).st_mode & 0o777 == 0o700
    assert d["etc"]["conflicts"] == ["/etc/motd"]
    rc, st, _ = jrun(device, "status")
    row = [r for r in st["deployments"] if r["name"] == d["deployment"]][0]
    assert row["etc_conflicts"] == ["/etc/motd"]
    rc, out, err = device.run(["status"])
    assert "/etc conflict: /etc/motd" in out


def test_unknown_rev(device):
    rc, out, err = device.run(["deploy", "no/such-branch"])
    assert rc == 1 and "no/such-branch" in err
    rc, out, err = device.run(["deploy", "ab" * 32])
    assert rc == 1 and "no such commit" in err
    assert deployed(device) == [device.old]


def test_commit_for_another_board_is_refused(device, tmp_path):
    other = commit(device, sample(str(tmp_path / "vx"), "3"), "3", branch="other-board/stable")
    rc, out, err = device.run(["deploy", other])
    assert rc == 1
    assert "for board 'other-board'" in err and "this device is 'demo'" in err
    assert deployed(device) == [device.old] and not device.contract()["trial"]


def test_corrupt_object_is_refused_by_name(device):
    repo = Sysroot(device.path).repo()
    from updater import trees

    entry = trees.lookup(repo, bytes.fromhex(device.v2), "/usr/bin/newtool")
    path = repo.object_path(entry.oid, "file")
    os.chmod(path, 0o755)
    with open(path, "r+b") as f:
        f.write(b"X")
    rc, out, err = device.run(["deploy", BRANCH])
    assert rc == 1
    assert entry.oid.hex() in err and "/usr/bin/newtool" in err
    assert deployed(device) == [device.old] and not device.contract()["trial"]
    rc, out, err = device.fsck()
    assert rc == 1 and entry.oid.hex()[:12] in out


def test_shared_object_corruption_caught_by_verify_all_and_fsck(device):
    repo = Sysroot(device.path).repo()
    from updater import trees

    entry = trees.lookup(repo, bytes.fromhex(device.v2), "/sbin/init")  # shared by v1 and v2
    with open(repo.object_path(entry.oid, "file"), "r+b") as f:
        f.write(b"#")
        f.seek(3)
        f.write(b"X")
    rc, out, err = device.run(["deploy", BRANCH, "--verify", "all"])
    assert rc == 1 and entry.oid.hex() in err
    rc, out, err = device.fsck()
    assert rc == 1 and entry.oid.hex()[:12] in out and "corrupt" in out


def test_stale_half_built_deployment_is_cleaned_first(device):
    stale = os.path.join(device.deploy_dir(), ".tmp-" + device.v2 + ".0")
    write(stale, "usr/junk", b"half")
    os.chmod(os.path.join(stale, "usr"), 0o500)
    rc, d, err = jrun(device, "deploy", BRANCH)
    assert rc == 0, err
    assert d["cleaned"]["deploy_tmp"] == 1
    assert deployed(device) == sorted([device.old, d["deployment"]])
    assert device.fsck()[0] == 0


def test_not_enough_space_writes_nothing(device):
    sysroot = Sysroot(device.path)
    cfg = sysroot.config()
    cfg.reserve = fs.free_bytes(device.path) + (1 << 30)
    fs.write_atomic(sysroot.config_path, cfg.dump().encode())
    before = read(os.path.join(device.path, "updater", "state"))
    rc, out, err = device.run(["deploy", BRANCH])
    assert rc == 1 and "reserve" in err and "free" in err
    assert deployed(device) == [device.old]
    assert read(os.path.join(device.path, "updater", "state")) == before


def test_emlink_falls_back_to_copies_and_fsck_accepts_them(device, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EMLINK, "too many links")

    monkeypatch.setattr(fs, "link", no_link)
    rc, d, err = jrun(device, "deploy", BRANCH)
    assert rc == 0, err
    assert d["checkout"]["linked"] == 0 and d["checkout"]["copied"] > 0
    monkeypatch.undo()
    assert device.fsck()[0] == 0
    lib = os.path.join(device.deploy_dir(), d["deployment"], "usr/lib/libapp.so.1")
    assert os.stat(lib).st_nlink == 1
    with open(lib, "r+b") as f:  # a copy changed through the deployment
        f.write(b"X")
    rc, out, err = device.fsck()
    assert rc == 1 and "usr/lib/libapp.so.1" in out and "content differs" in out


def test_fsck_finds_writes_through_a_deployment(device):
    dep = os.path.join(device.deploy_dir(), device.old)
    write(dep, "usr/stray", b"written into a deployment\n")
    os.chmod(os.path.join(dep, "sbin/init"), 0o777)  # hard-linked: changes the shared object
    rc, out, err = device.fsck()
    assert rc == 1
    assert "/usr/stray: not in the commit" in out
    assert "mode is 0o100777" in out
    os.remove(os.path.join(dep, "usr/lib/libapp.so.1"))
    rc, out, err = device.fsck()
    assert "/usr/lib/libapp.so.1: missing" in out


def test_repository_commands_work_on_the_sysroot(device):
    rc, out, err = device.run(["log", BRANCH])
    assert rc == 0 and device.v2 in out and device.v1 in out
    rc, out, err = device.run(["show", device.v2[:10]])
    assert rc == 0 and "Version: 2" in out
    rc, out, err = device.run(["ls", BRANCH, "/etc"])
    assert rc == 0 and "/etc/motd" in out
    rc, out, err = device.run(["fsck", "--json"])
    assert rc == 0 and json.loads(out)["checked"]["deployment"] == 1


def test_rollback_cancels_a_trial_then_stages_the_previous(device):
    rc, d, err = jrun(device, "deploy", BRANCH)
    new = d["deployment"]
    rc, r, err = jrun(device, "rollback")
    assert rc == 0 and r["cancelled"] == new and r["next_boot"] == device.old
    assert not device.contract()["trial"]
    rc, out, err = device.run(["deploy", BRANCH])
    assert rc == 0
    booted, _ = device.reboot()
    assert booted.startswith(device.v2)
    rc, r, err = jrun(device, "rollback")
    assert rc == 0 and r["staged"] == device.old
    booted, (rc, out, err) = device.reboot()
    assert booted == device.old and rc == 0
    assert device.contract()["current"] == device.old


def test_rollback_with_nothing_to_go_back_to(tmp_path):
    dev = make_device(str(tmp_path))
    commit(dev, sample(str(tmp_path / "v1"), "1"), "1")
    dev.run(["deploy", BRANCH])
    dev.reboot()
    rc, out, err = dev.run(["rollback"])
    assert rc == 1 and "no other deployment" in err


def test_mark_good(device):
    rc, d, err = jrun(device, "deploy", BRANCH)
    rc, m, err = jrun(device, "mark-good")  # still running the known-good v1: nothing changes
    assert rc == 0 and not m["changed"] and device.contract()["trial"] == d["deployment"]
    with open(device.cmdline, "w") as f:
        f.write("updater.deployment=%s\n" % d["deployment"])
    rc, m, err = jrun(device, "mark-good")
    assert rc == 0 and m["changed"]
    assert device.contract()["current"] == d["deployment"]
    os.remove(device.cmdline)
    rc, out, err = device.run(["mark-good"])
    assert rc == 1 and "cannot tell which deployment is running" in err


def test_boot_records_a_fallback(device):
    rc, d, err = jrun(device, "deploy", BRANCH)
    new = d["deployment"]
    kernel = os.path.join(device.deploy_dir(), new, "boot", "vmlinuz")
    os.rename(kernel, kernel + ".gone")  # the trial's kernel does not load: U-Boot falls back
    for attempt in range(3):
        booted, (rc, out, err) = device.reboot()
        assert booted == device.old and rc == 0
    booted, (rc, out, err) = device.reboot()  # attempts used up: the script gives up on the trial
    assert booted == device.old
    result = json.loads(out)
    assert any("gave up on %s" % new in e for e in result["events"])
    contract = device.contract()
    assert not contract["failed"] and not contract["trial"] and contract["current"] == device.old
    rc, st, _ = jrun(device, "status")
    assert [r for r in st["deployments"] if r["name"] == new][0]["failed"]
    assert st["boot_history"][-1]["event"] == "fallback"


def test_health_check_failure_cancels_the_trial(tmp_path):
    check = str(tmp_path / "check.sh")
    flag = str(tmp_path / "healthy")
    with open(check, "w") as f:
        f.write("#!/bin/sh\necho checking $UPDATER_DEPLOYMENT\ntest -e %s\n" % flag)
    os.chmod(check, 0o755)
    dev = make_device(str(tmp_path), health_checks=[check])
    commit(dev, sample(str(tmp_path / "v1"), "1"), "1")
    dev.run(["deploy", BRANCH])
    open(flag, "w").close()
    old, (rc, out, err) = dev.reboot()
    assert rc == 0, err
    commit(dev, sample(str(tmp_path / "v2"), "2"), "2")
    dev.run(["deploy", BRANCH])
    os.remove(flag)
    booted, (rc, out, err) = dev.reboot()
    assert booted != old and rc == 1
    result = json.loads(out)
    assert result["action"] == "trial-cancelled" and not result["health_checks"][0]["ok"]
    assert dev.contract()["current"] == old and not dev.contract()["trial"]
    booted, (rc, out, err) = dev.reboot()
    assert booted == old and rc == 0


def test_prune_keeps_booted_current_and_rollback(tmp_path):
    dev = make_device(str(tmp_path), keep=2)
    names = []
    for v in ("1", "2", "3", "4"):
        commit(dev, sample(str(tmp_path / ("v" + v)), v), v)
        rc, out, err = dev.run(["deploy", BRANCH])
        assert rc == 0, err
        booted, _ = dev.reboot()
        names.append(booted)
    assert len(deployed(dev)) == 4
    rc, r, err = jrun(dev, "prune", "--dry-run")
    assert rc == 0 and sorted(r["deployments_removed"]) == sorted(names[:2]) and len(deployed(dev)) == 4
    rc, r, err = jrun(dev, "prune")
    assert rc == 0, err
    assert deployed(dev) == sorted(names[2:])
    assert r["removed"]["commit"] >= 1 and r["removed"]["file"] >= 1
    assert dev.fsck()[0] == 0
    rc, st, _ = jrun(dev, "status")
    assert st["rollback"] == names[2] and st["current"] == names[3]
    rc, out, err = dev.run(["prune", "--keep", "1"])
    assert rc == 2


def test_repo_prune_still_works_with_repo(device):
    rc, out, err = run_cli(["--repo", os.path.join(device.path, "updater", "repo"), "prune", "--keep", "1", "--dry-run",
                            "--json"])
    assert rc == 0 and "deployments_removed" not in json.loads(out)


def test_second_updater_fails_fast_or_waits(device):
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from updater.sysroot import Sysroot\n"
            "with Sysroot(%r).lock():\n"
            "    print('locked', flush=True); time.sleep(1.5)\n") % (ROOT, device.path)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"
    rc, out, err = device.run(["--no-wait", "deploy", BRANCH])
    assert rc == 1 and "is locked by pid %d" % holder.pid in err
    assert deployed(device) == [device.old]
    start = time.time()
    rc, out, err = device.run(["deploy", BRANCH])
    assert rc == 0 and "waiting for the lock" in err and time.time() - start > 0.3
    holder.wait()
    assert len(deployed(device)) == 2


def test_two_upgrades_at_once_lose_nothing(device):
    env = dict(os.environ, UPDATER_CMDLINE=device.cmdline, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "updater", "--sysroot", device.path, "deploy", BRANCH]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate() + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    names = deployed(device)
    assert len(names) == 3 and device.contract()["trial"] in names
    assert device.fsck()[0] == 0


def test_cmdline_parsing():
    from updater.sysroot import booted_from_cmdline

    assert booted_from_cmdline(b"console=ttyS0 updater.deployment=abc.0 quiet\n") == "abc.0"
    assert booted_from_cmdline(b"root=/dev/vda1") is None
    assert booted_from_cmdline(b"updater.deployment=../x") is None
    assert booted_from_cmdline(b"updater.deployment=") is None


def test_uboot_device_keeps_a_fallback_for_a_lost_environment(tmp_path):
    """U-Boot backend: staging is one env write; boot/updater-env.txt names the known-good
    deployment so boot.cmd can still boot when both env copies are lost; `boot` then reports
    the lost environment and writes a whole one again with the running deployment as known-good."""
    from updater import ubootenv

    dev = make_uboot_device(str(tmp_path))
    branch = "beaglebone-black/stable"
    commit(dev, sample(str(tmp_path / "v1"), "1"), "1", branch=branch)
    rc, d, err = jrun(dev, "deploy", branch)
    assert rc == 0, err
    v1 = d["deployment"]
    with open(os.path.join(dev.path, "boot", "updater-env.txt")) as f:
        text = ubootenv.parse_text(f.read())
    assert text["upd_current"] == v1 and text["upd_kernel"] == "boot/vmlinuz"
    dev.reboot()
    commit(dev, sample(str(tmp_path / "v2"), "2"), "2", branch=branch)
    rc, d, err = jrun(dev, "deploy", branch)
    assert rc == 0, err
    assert dev.contract()["trial"] == d["deployment"]
    booted, (rc, out, err) = dev.reboot()
    assert booted == d["deployment"] and rc == 0, err
    with open(os.path.join(dev.path, "boot", "updater-env.txt")) as f:
        assert ubootenv.parse_text(f.read())["upd_current"] == booted
    with open(os.path.join(dev.path, "env.img"), "r+b") as f:  # both copies lost
        f.seek(0x260000)
        f.write(b"\0" * 0x40000)
    assert not dev.contract()["env_ok"]
    name, (rc, out, err) = dev.reboot()  # boot.cmd imports upd_current from the fallback file
    assert name == booted
    result = json.loads(out)
    assert rc == 0 and result["action"] == "env-repaired", out
    assert any("unusable" in e for e in result["events"])
    contract = dev.contract()
    assert contract["env_ok"] and contract["current"] == booted and not contract["trial"]
    rc, st, err = jrun(dev, "status")
    assert st["boot_history"][-1]["event"] in ("env-repaired", "booted")
    assert dev.run(["deploy", branch])[0] == 0


def test_two_upgrades_at_once_over_a_remote(tmp_path):
    """Two `upgrade` processes on one device: one deploys, the other waits, then finds it staged."""
    base = str(tmp_path)
    srv, key = os.path.join(base, "server"), os.path.join(base, "key")
    for argv in (["keygen", "--out", key], ["--repo", srv, "init", "--mode", "bare"]):
        assert run_cli(argv)[0] == 0
    dev = make_device(base)
    rc, out, err = run_cli(["--sysroot", dev.path, "init", "--remote", "file://" + srv, "--branch", BRANCH,
                            "--trust", key + ".pub"])
    assert rc == 0, err
    for v in ("1", "2"):
        assert run_cli(["--repo", srv, "commit", sample(os.path.join(base, "v" + v), v), "--branch", BRANCH,
                        "--version", v, "--timestamp", str(1000 * int(v))])[0] == 0
        assert run_cli(["--repo", srv, "publish", "--key", key])[0] == 0
        if v == "1":
            assert dev.run(["upgrade"])[0] == 0
            dev.reboot()
    env = dict(os.environ, UPDATER_CMDLINE=dev.cmdline, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "updater", "--sysroot", dev.path, "upgrade", "--json"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate() + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    docs = [json.loads(r[0]) for r in results]
    assert sorted(bool(d["deploy"]) for d in docs) == [False, True]
    assert [d["up_to_date"] for d in docs if not d["deploy"]] == ["staged"]
    assert len(deployed(dev)) == 2 and dev.fsck()[0] == 0


def test_uboot_device_refuses_a_commit_it_could_not_boot(tmp_path):
    """A U-Boot device stages nothing that lacks the kernel, initramfs, device tree or init the
    board's boot script and early boot load: the error names the missing path and the board."""
    import shutil

    dev = make_uboot_device(str(tmp_path))
    branch = "beaglebone-black/stable"
    for missing in ("boot/vmlinuz", "boot/initrd.img", "boot/dtbs/am335x-boneblack.dtb", "sbin/init"):
        src = sample(str(tmp_path / ("v-" + missing.replace("/", "_"))), "1")
        os.remove(os.path.join(src, missing))
        commit(dev, src, "1", branch=branch)
        rc, d, err = jrun(dev, "deploy", branch)
        assert rc == 1 and "has no /%s" % missing in err and "beaglebone-black" in err, err
        assert deployed(dev) == []
        shutil.rmtree(src)


def test_fallback_file_is_read_under_the_board_variable_name(tmp_path, monkeypatch):
    """A board that renames upd_current: boot/updater-env.txt is written AND read back under its
    name (prune protects that deployment, `boot` names it after a lost environment)."""
    from updater import board as board_mod
    from updater import deploy

    src = open(board_mod.find("beaglebone-black")).read()
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "renamed.conf").write_text(src.replace("name = beaglebone-black", "name = renamed").replace(
        "attempt_limit = 3", "attempt_limit = 3\nvar_current = good_dep"))
    monkeypatch.setenv(board_mod.ENV_VAR, str(boards))
    dev = make_uboot_device(str(tmp_path), "renamed")
    commit(dev, sample(str(tmp_path / "v1"), "1"), "1", branch="renamed/stable")
    rc, d, err = jrun(dev, "deploy", "renamed/stable")
    assert rc == 0, err
    assert "good_dep=%s\n" % d["deployment"] in read(os.path.join(dev.path, "boot", "updater-env.txt")).decode()
    assert deploy.read_fallback(Sysroot(dev.path)) == d["deployment"]


def test_uboot_device_deploys_a_merged_usr_image(tmp_path):
    """Debian's /sbin -> usr/sbin and an absolute init link are followed inside the commit."""
    dev = make_uboot_device(str(tmp_path))
    src = sample(str(tmp_path / "v1"), "1")
    os.makedirs(os.path.join(src, "usr/sbin"))
    os.rename(os.path.join(src, "sbin/init"), os.path.join(src, "usr/sbin/init-real"))
    os.rename(os.path.join(src, "sbin/libapp"), os.path.join(src, "usr/sbin/libapp"))
    os.rmdir(os.path.join(src, "sbin"))
    os.symlink("usr/sbin", os.path.join(src, "sbin"))
    os.symlink("/usr/sbin/init-real", os.path.join(src, "usr/sbin/init"))
    commit(dev, src, "1", branch="beaglebone-black/stable")
    rc, d, err = jrun(dev, "deploy", "beaglebone-black/stable")
    assert rc == 0, err


def test_health_hooks_never_run_a_deployment_name_as_shell(tmp_path, monkeypatch):
    """The booted name comes from the boot environment: a hostile one is not put on a shell line."""
    from updater import bootflow

    seen = tmp_path / "seen"
    hook = tmp_path / "hook"
    hook.write_text('#!/bin/sh\necho "[$UPDATER_DEPLOYMENT]" > %s\n' % seen)
    hook.chmod(0o755)
    monkeypatch.chdir(str(tmp_path))
    out = bootflow.run_health_checks([str(hook)], "x;touch PWNED", lambda text: None)
    assert out[0]["ok"] and not (tmp_path / "PWNED").exists()
    assert seen.read_text() == "[]\n"
    bootflow.run_health_checks([str(hook)], "ab12.0", lambda text: None)
    assert seen.read_text() == "[ab12.0]\n"
