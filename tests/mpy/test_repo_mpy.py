# heap: 512K
"""Repository, objects, trees and checkout under MicroPython (user-mode repo; copies, no links)."""

import os

from mpytest import raises, run, scratch

from updater import checkout, fs, fsck, objects, prune, trees
from updater.errors import IntegrityError, NotFoundError, UnsafePathError
from updater.repo import Repo

HDR = objects.file_header(0o100644, 0, 0)
EXE = objects.file_header(0o100755, 0, 0)


def build(repo, version, extra=b""):
    tx = repo.transaction()
    big = bytes(range(256)) * 100 + extra
    f1, n1 = tx.add_file_chunks(HDR, [b"hello ", b"world\n"])
    f2, n2 = tx.add_file_chunks(EXE, [big[:1000], big[1000:]])
    f3, n3 = tx.add_file_chunks(HDR, [])
    meta = tx.add_meta("meta", objects.dirmeta(0o40755, 0, 0))
    etc = tx.add_meta("tree", objects.tree([("motd", f1, HDR, n1), ("empty", f3, HDR, n3)], []))
    usr = tx.add_meta("tree", objects.tree([("tool", f2, EXE, n2)], []))
    root = tx.add_meta("tree", objects.tree([], [("etc", etc, meta), ("usr", usr, meta)]))
    tx.commit()
    parent = repo.read_ref("dev/stable")
    data = objects.commit(root, meta, parent, 1000 + len(version), "test", version, "dev/stable", "dev", {})
    tx = repo.transaction()
    cid = tx.add_meta("commit", data)
    tx.commit()
    repo.write_ref("dev/stable", cid)
    return cid, big


def read(path):
    f = fs.open_read(path)
    try:
        return f.read()
    finally:
        f.close()


def test_build_checkout_fsck_prune():
    base = scratch("repo1")
    repo = Repo.init(base + "/repo", "user")
    c1, big = build(repo, "1")
    c2, big2 = build(repo, "2", b"more")
    assert repo.resolve("dev/stable") == c2
    assert repo.resolve("dev/stable^") == c1
    assert repo.resolve(objects.to_hex(c1)[:8]) == c1
    raises(NotFoundError, repo.resolve, "nope/x")
    stats = checkout.checkout(repo, c2, base + "/co")
    assert stats.files == 3 and stats.created_empty == 1
    assert read(base + "/co/etc/motd") == b"hello world\n"
    assert read(base + "/co/usr/tool") == big2
    assert read(base + "/co/etc/empty") == b""
    added, removed, modified = trees.diff(repo, c1, c2)
    assert modified == ["/usr/tool"] and not added and not removed
    assert [e.path for e in trees.walk(repo, repo.load_commit(c2).tree)] == [
        "/etc", "/etc/empty", "/etc/motd", "/usr", "/usr/tool"]
    assert fsck.fsck(repo).as_dict()["ok"]
    result = prune.prune(repo, 1)
    assert result["removed"]["commit"] == 1 and result["removed"]["file"] == 1
    assert fsck.fsck(repo).as_dict()["ok"]


def test_corruption_detected():
    base = scratch("repo2")
    repo = Repo.init(base + "/repo", "user")
    cid, big = build(repo, "1")
    tree = repo.load_tree(repo.load_commit(cid).tree)
    usr = repo.load_tree(tree.find("usr")[1][1])
    oid = usr.files[0][1]
    path = repo.object_path(oid, "file")
    data = bytearray(read(path))
    data[5] ^= 1
    fs.remove(path)
    fs.write_atomic(path, bytes(data))
    report = fsck.fsck(repo).as_dict()
    assert not report["ok"] and report["problems"][0]["object"] == objects.to_hex(oid)
    raises(IntegrityError, repo.verify_file, oid, usr.files[0][2], usr.files[0][3])


def test_wrong_expected_id_stores_nothing():
    base = scratch("repo3")
    repo = Repo.init(base + "/repo", "user")
    tx = repo.transaction()
    raises(IntegrityError, tx.add_file_chunks, HDR, [b"evil"], bytes(32))
    tx.commit()
    assert list(repo.iter_objects()) == []
    assert fs.listdir(repo.tmp_dir) == []


def test_names_and_dest_checked():
    raises(UnsafePathError, objects.check_name, "..")
    raises(UnsafePathError, objects.check_name, "a/b")
    base = scratch("repo4")
    repo = Repo.init(base + "/repo", "user")
    cid, _ = build(repo, "1")
    fs.makedirs(base + "/full")
    fs.write_atomic(base + "/full/x", b"x")
    try:
        checkout.checkout(repo, cid, base + "/full")
        raise AssertionError("checkout into a non-empty directory must fail")
    except Exception as err:  # noqa: BLE001
        assert "not empty" in str(err)


def test_host_made_repository():
    path = os.getenv("HOST_REPO")
    if not path:
        return
    repo = Repo.open(path)
    cid = repo.resolve("host/stable")
    dest = scratch("hostco") + "/co"
    checkout.checkout(repo, cid, dest)
    assert read(dest + "/etc/motd") == b"welcome\n"
    assert fsck.fsck(repo).as_dict()["ok"]


run(globals())
