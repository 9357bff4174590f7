"""Crash safety: an update killed at EVERY durable operation leaves a device that boots the old
deployment or the complete new one, passes fsck, holds no object under a wrong hash, and
completes the update when it runs again (tests/crashharness.py explains the method)."""

import os
import shutil

import pytest

from crashharness import CRASH_EXIT, Device, copy_tree, run_cli, run_killed_at
from devicekit import BRANCH, make_device, make_uboot_device, sample


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A device running v1 (booted, marked good, /etc changed locally) with v2 in its repository."""
    base = str(tmp_path_factory.mktemp("crash"))
    dev = make_device(base)
    root, cmdline = dev.path, dev.cmdline
    repo = os.path.join(root, "updater", "repo")
    rc, out, err = run_cli(["--repo", repo, "commit", sample(os.path.join(base, "v1"), "1"), "--branch", BRANCH,
                            "--version", "1", "--timestamp", "1000"])
    assert rc == 0, err
    rc, out, err = dev.run(["deploy", BRANCH])
    assert rc == 0, err
    old, (rc, out, err) = dev.reboot()
    assert rc == 0, err
    with open(os.path.join(dev.deploy_dir(), old, "etc", "hostname"), "w") as f:
        f.write("changed-on-the-device\n")
    rc, out, err = run_cli(["--repo", repo, "commit", sample(os.path.join(base, "v2"), "2"), "--branch", BRANCH,
                            "--version", "2", "--timestamp", "2000"])
    assert rc == 0, err
    new_commit = out.split()[1]
    return {"base": base, "root": root, "old": old, "new": new_commit, "cmdline": cmdline}


def fresh(template, tag):
    work = os.path.join(template["base"], "run-%s" % tag)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    root = os.path.join(work, "sysroot")
    copy_tree(template["root"], root)
    dev = Device(root, os.path.join(work, "cmdline"), env_image=template.get("env_image"),
                 board=template.get("board"))
    dev.running(template["old"])  # the device runs the old deployment when the update starts
    return dev


def test_harness_counts_every_durable_operation(template):
    dev = fresh(template, "count")
    rc, ops = run_killed_at(["--sysroot", dev.path, "deploy", BRANCH], 0, dev.env)
    assert rc == 0
    kinds = set(op.split()[0] for op in ops)
    assert {"write", "fsync", "sync", "rename", "link", "mkdir"} <= kinds, kinds
    # the boot selection is the last write of a deploy: its file is renamed into place
    assert any(op.startswith("rename ") and op.endswith("/updater/bootenv") for op in ops[-8:]), ops[-8:]
    rc, ops2 = run_killed_at(["--sysroot", dev.path, "deploy", BRANCH], 3, dev.env)
    assert rc == CRASH_EXIT and len(ops2) == 3


@pytest.fixture(scope="module")
def uboot_template(tmp_path_factory):
    """Like ``template`` on a U-Boot board with a redundant env (beaglebone-black: two copies on
    eMMC, a flags counter): the boot selection is one write_at into the inactive copy."""
    base = str(tmp_path_factory.mktemp("crash-uboot"))
    branch = "beaglebone-black/stable"
    dev = make_uboot_device(base)
    root = dev.path
    repo = os.path.join(root, "updater", "repo")
    rc, out, err = run_cli(["--repo", repo, "commit", sample(os.path.join(base, "v1"), "1"), "--branch", branch,
                            "--version", "1", "--timestamp", "1000"])
    assert rc == 0, err
    rc, out, err = dev.run(["deploy", branch])
    assert rc == 0, err
    old, (rc, out, err) = dev.reboot()
    assert rc == 0, err
    rc, out, err = run_cli(["--repo", repo, "commit", sample(os.path.join(base, "v2"), "2"), "--branch", branch,
                            "--version", "2", "--timestamp", "2000"])
    assert rc == 0, err
    return {"base": base, "root": root, "old": old, "new": out.split()[1], "env_image": "env.img",
            "board": "beaglebone-black", "branch": branch}


@pytest.mark.parametrize("which", ["file", "uboot"])
def test_deploy_killed_at_every_point(which, request):
    template = request.getfixturevalue("template" if which == "file" else "uboot_template")
    argv = ["deploy", template.get("branch", BRANCH)]
    _every_point(template, argv)


def _every_point(template, argv):
    probe = fresh(template, "probe")
    rc, ops = run_killed_at(["--sysroot", probe.path] + argv + probe.extra, 0, probe.env)
    assert rc == 0
    assert len(ops) >= 30
    if template.get("env_image"):  # the boot selection: one in-place write of the inactive env copy
        assert [op.split()[0] for op in ops].count("write_at") == 1, ops
    failures = []
    for k in range(1, len(ops) + 1):
        dev = fresh(template, "k")
        rc, seen = run_killed_at(["--sysroot", dev.path] + argv + dev.extra, k, dev.env)
        assert rc == CRASH_EXIT, "deploy was not killed at point %d (%s): exit %d" % (k, ops[k - 1], rc)
        problems = dev.check_after_crash(argv, template["old"], template["new"])
        if problems:
            failures.append("killed before %d/%d (%s): %s" % (k, len(ops), seen[-1], "; ".join(problems)))
    print("crash points exercised: %d" % len(ops))
    assert not failures, "\n".join(failures[:10])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A published repository (file:// remote) with v1 and v2 and a v1->v2 delta, and a device
    that pulled and booted v1 with ``upgrade``."""
    base = str(tmp_path_factory.mktemp("served"))
    srv = os.path.join(base, "server")
    key = os.path.join(base, "key")
    for argv in (["keygen", "--out", key], ["--repo", srv, "init", "--mode", "bare"]):
        rc, out, err = run_cli(argv)
        assert rc == 0, err

    def publish(version):
        rc, out, err = run_cli(["--repo", srv, "commit", sample(os.path.join(base, "v" + version), version),
                                "--branch", BRANCH, "--version", version, "--timestamp", str(1000 * int(version))])
        assert rc == 0, err
        cid = out.split()[1]
        if version != "1":
            rc, out, err = run_cli(["--repo", srv, "delta", "--from", BRANCH + "^", "--to", BRANCH, "--jobs", "1"])
            assert rc == 0, err
        rc, out, err = run_cli(["--repo", srv, "publish", "--key", key])
        assert rc == 0, err
        return cid

    publish("1")
    root = os.path.join(base, "template")
    dev = Device(root, os.path.join(base, "cmdline"))
    rc, out, err = run_cli(["--sysroot", root, "init", "--remote", "file://" + srv, "--branch", BRANCH,
                            "--trust", key + ".pub"])
    assert rc == 0, err
    rc, out, err = dev.run(["upgrade"])
    assert rc == 0, err
    old, (rc, out, err) = dev.reboot()
    assert rc == 0, err
    new = publish("2")
    return {"base": base, "root": root, "old": old, "new": new}


def test_upgrade_over_a_remote_killed_at_every_point(served):
    """pull (signed summary, delta, objects, ref) + deploy, killed at each durable operation."""
    argv = ["upgrade"]
    probe = fresh(served, "probe")
    rc, ops = run_killed_at(["--sysroot", probe.path] + argv, 0, probe.env)
    assert rc == 0
    failures = []
    for k in range(1, len(ops) + 1):
        dev = fresh(served, "k")
        rc, seen = run_killed_at(["--sysroot", dev.path] + argv, k, dev.env)
        assert rc == CRASH_EXIT, "upgrade was not killed at point %d (%s): exit %d" % (k, ops[k - 1], rc)
        problems = dev.check_after_crash(argv, served["old"], served["new"])
        if problems:
            failures.append("killed before %d/%d (%s): %s" % (k, len(ops), seen[-1], "; ".join(problems)))
    print("upgrade crash points exercised: %d" % len(ops))
    assert len(ops) >= 60
    assert not failures, "\n".join(failures[:10])
