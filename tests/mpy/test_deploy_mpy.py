# heap: 512K
"""Deployments under MicroPython: policies, /etc merge, deploy, boot, status, fsck of deployments,
rollback and prune on a user-mode sysroot (copies instead of links, no chmod, no flock)."""

from mpytest import raises, run, scratch

from updater import bootflow, bootloader, deploy, deploycheck, deployments, etcmerge, fs, fsck, objects
from updater.errors import NotFoundError, TrustError
from updater.sysroot import DeviceConfig, Sysroot, booted_from_cmdline, records

HDR = objects.file_header(0o100644, 0, 0)
EXE = objects.file_header(0o100755, 0, 0)
A = "a" * 64
B = "b" * 64


def test_decide_table():
    F, D = etcmerge.FILE, etcmerge.DIR
    assert etcmerge.decide(F, F, F, False, True, False) == ("new", False)
    assert etcmerge.decide(F, F, F, True, False, False) == ("local", False)
    assert etcmerge.decide(F, F, F, True, True, False) == ("local", True)
    assert etcmerge.decide(F, F, F, True, True, True) == ("local", False)
    assert etcmerge.decide(F, None, F, True, False, False) == ("delete", False)
    assert etcmerge.decide(F, None, F, True, True, False) == ("delete", True)
    assert etcmerge.decide(F, None, None, True, True, False) == ("delete", False)
    assert etcmerge.decide(None, None, F, False, True, False) == ("new", False)
    assert etcmerge.decide(D, D, None, False, True, False) == ("descend", False)
    assert etcmerge.decide(None, F, None, True, False, False) == ("local", False)


def test_names_and_policies():
    assert deployments.parse_name(A + ".12") == (A, 12)
    assert deployments.parse_name(A) is None and deployments.parse_name("x.0") is None
    assert deployments.parse_name(A + ".-1") is None
    assert deployments.next_name(A, [A + ".0", A + ".3", B + ".7", ".tmp-x"]) == A + ".4"
    recs = {A + ".0": {"seq": 1, "good": 5, "good_seq": 1}, B + ".0": {"seq": 2, "good": 9, "good_seq": 2},
            A + ".1": {"seq": 3}, B + ".1": {"seq": 4, "failed": 7}}
    names = sorted(recs)
    assert deployments.newest_first(names, recs) == [B + ".1", A + ".1", B + ".0", A + ".0"]
    contract = {"current": B + ".0", "trial": ""}
    assert deployments.rollback_target(names, recs, contract, B + ".0") == A + ".0"
    remove, kept = deployments.prune_plan(names, recs, contract, B + ".0", 2)
    assert kept == [B + ".0", A + ".0"] and remove == [B + ".1", A + ".1"]
    remove, kept = deployments.prune_plan(names, recs, {"current": B + ".0", "trial": A + ".1"}, B + ".0", 2)
    assert A + ".1" in kept and A + ".0" in kept and B + ".0" in kept and remove == [B + ".1"]


def test_cmdline():
    assert booted_from_cmdline(b"quiet updater.deployment=%s.0 x=1" % A.encode()) == A + ".0"
    assert booted_from_cmdline(b"updater.deployment=/etc") is None


def build(repo, version, motd):
    tx = repo.transaction()
    k, kn = tx.add_file_chunks(EXE, [b"kernel ", version.encode()])
    m, mn = tx.add_file_chunks(HDR, [motd])
    h, hn = tx.add_file_chunks(HDR, [b"device\n"])
    e, en = tx.add_file_chunks(HDR, [])
    lib, libn = tx.add_file_chunks(HDR, [bytes(range(256)) * 20])
    meta = tx.add_meta("meta", objects.dirmeta(0o40755, 0, 0))
    boot = tx.add_meta("tree", objects.tree([("vmlinuz", k, EXE, kn)], []))
    etc = tx.add_meta("tree", objects.tree([("motd", m, HDR, mn), ("hostname", h, HDR, hn), ("empty", e, HDR, en)], []))
    usr = tx.add_meta("tree", objects.tree([("lib.so", lib, HDR, libn)], []))
    root = tx.add_meta("tree", objects.tree([], [("boot", boot, meta), ("etc", etc, meta), ("usr", usr, meta)]))
    tx.commit()
    data = objects.commit(root, meta, repo.read_ref("dev/stable"), 1000 + len(version), "t", version,
                          "dev/stable", "dev", {})
    tx = repo.transaction()
    cid = tx.add_meta("commit", data)
    tx.commit()
    repo.write_ref("dev/stable", cid)
    return cid


def read(path):
    f = fs.open_read(path)
    try:
        return f.read()
    finally:
        f.close()


def boot_into(sysroot):
    bl = sysroot.bootloader()
    name = bootloader.boot_once(bl)
    return name, bootflow.boot(sysroot, booted=name)


def test_deploy_merge_boot_prune():
    base = scratch("dep1")
    sysroot = Sysroot.create(base + "/sr", DeviceConfig(board="dev", branch="dev/stable", reserve=0, keep=2), None, "user")
    repo = sysroot.repo()
    c1 = build(repo, "1", b"motd 1\n")
    first = deploy.deploy(sysroot, c1)
    n1 = first["deployment"]
    assert first["current"] and sysroot.bootloader().read()["current"] == n1
    booted, result = boot_into(sysroot)
    assert booted == n1 and result["ok"]
    fs.write_atomic(sysroot.deployment_path(n1) + "/etc/hostname", b"mine\n")
    fs.write_atomic(sysroot.deployment_path(n1) + "/etc/motd", b"local motd\n")
    c2 = build(repo, "2", b"motd 2\n")
    second = deploy.deploy(sysroot, c2, booted=n1)
    n2 = second["deployment"]
    assert second["staged"] and second["etc"]["conflicts"] == ["/etc/motd"]
    etc = sysroot.deployment_path(n2) + "/etc/"
    assert read(etc + "hostname") == b"mine\n" and read(etc + "motd") == b"local motd\n"
    booted, result = boot_into(sysroot)
    assert booted == n2 and result["action"] == "marked-good", result
    status = deployments.status(sysroot, n2)
    assert status["current"] == n2 and status["rollback"] == n1
    report = fsck.fsck(repo, extra_commits=deploycheck.commit_roots(sysroot))
    assert deploycheck.check(sysroot, report) == 2 and report.as_dict()["ok"], report.problems
    fs.write_atomic(sysroot.deployment_path(n2) + "/usr/stray", b"x")
    report = fsck.fsck(repo)
    deploycheck.check(sysroot, report)
    assert not report.as_dict()["ok"]
    fs.remove(sysroot.deployment_path(n2) + "/usr/stray")
    third = deploy.deploy(sysroot, c2, booted=n2)
    assert third["deployment"] == objects.to_hex(c2) + ".1"
    r = bootflow.rollback(sysroot, n2)
    assert r["cancelled"] == third["deployment"]
    result = deployments.prune(sysroot, n2)
    assert result["deployments_removed"] == [third["deployment"]], result
    assert sorted(deployments.on_disk(sysroot)) == sorted([n1, n2])
    state = sysroot.load_state()
    assert sorted(records(state)) == sorted([n1, n2])


def test_bad_input():
    base = scratch("dep2")
    sysroot = Sysroot.create(base + "/sr", DeviceConfig(board="other", branch="dev/stable", reserve=0), None, "user")
    c1 = build(sysroot.repo(), "1", b"m\n")
    raises(TrustError, deploy.deploy, sysroot, c1)
    raises(NotFoundError, sysroot.repo().resolve, "nope/x")
    fs.mkdir(sysroot.deploy_dir + "/.tmp-" + A + ".0")
    assert deploy.clean_interrupted(sysroot)["deploy_tmp"] == 1
    assert deployments.on_disk(sysroot) == []


run(globals())
