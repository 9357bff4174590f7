"""Checkout: a hard-link farm that never writes outside DEST."""

import errno
import os
import subprocess

import pytest

from updater import checkout, fs, objects
from updater.errors import UnsafePathError, UpdaterError
from updater.host.commit import commit_source
from updater.repo import Repo


@pytest.fixture
def committed(tmp_path, sample_tree):
    repo = Repo.init(str(tmp_path / "repo"))
    cid, _ = commit_source(repo, sample_tree, "b/stable", timestamp=1)
    return repo, cid


def test_hardlinks_from_object_store(tmp_path, committed, sample_tree):
    repo, cid = committed
    dest = str(tmp_path / "co")
    stats = checkout.checkout(repo, cid, dest)
    tool = os.path.join(dest, "usr/bin/tool")
    tree = repo.load_tree(repo.load_tree(repo.load_commit(cid).tree).find("usr")[1][1])
    bin_tree = repo.load_tree(tree.find("bin")[1][1])
    oid = bin_tree.files[0][1]
    assert os.stat(tool).st_ino == os.stat(repo.object_path(oid, "file")).st_ino
    assert os.stat(tool).st_mode & 0o7777 == 0o4755
    assert os.readlink(os.path.join(dest, "bin")) == "usr/bin"
    assert os.path.isdir(os.path.join(dest, "var/lib/empty"))
    empty = os.path.join(dest, "etc/empty.conf")
    assert os.stat(empty).st_nlink == 1 and os.path.getsize(empty) == 0
    assert stats.created_empty == 1 and stats.copied == 0
    subprocess.run(["diff", "-r", "--no-dereference", sample_tree, dest], check=True)


def test_emlink_and_exdev_fall_back_to_copies(tmp_path, committed, monkeypatch):
    repo, cid = committed
    real_link = fs.link
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) % 2:
            raise OSError(errno.EMLINK, "too many links")
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(fs, "link", flaky)
    dest = str(tmp_path / "co")
    stats = checkout.checkout(repo, cid, dest)
    monkeypatch.setattr(fs, "link", real_link)
    assert stats.linked == 0 and stats.copied == stats.files - stats.created_empty
    tool = os.path.join(dest, "usr/bin/tool")
    assert os.stat(tool).st_nlink == 1 and os.stat(tool).st_mode & 0o7777 == 0o4755
    assert os.readlink(os.path.join(dest, "bin")) == "usr/bin"


def test_copy_paths_are_copies(tmp_path, committed):
    repo, cid = committed
    dest = str(tmp_path / "co")
    checkout.checkout(repo, cid, dest, copy=("etc",))
    assert os.stat(os.path.join(dest, "etc/motd")).st_nlink == 1
    assert os.stat(os.path.join(dest, "usr/bin/tool")).st_nlink > 1


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second file system")
def test_across_file_systems(tmp_path, committed):
    repo, cid = committed
    dest = "/dev/shm/updater-co-%d" % os.getpid()
    try:
        stats = checkout.checkout(repo, cid, dest)
        if os.stat(dest).st_dev != os.stat(repo.path).st_dev:
            assert stats.linked == 0 and stats.copied > 0
        with open(os.path.join(dest, "etc/motd"), "rb") as f:
            assert f.read() == b"welcome\n"
    finally:
        subprocess.run(["rm", "-rf", dest])


def test_dest_symlink_and_nonempty_refused(tmp_path, committed):
    repo, cid = committed
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        checkout.checkout(repo, cid, str(tmp_path / "link"))
    assert os.listdir(outside) == []
    (outside / "x").write_text("x")
    with pytest.raises(UpdaterError, match="not empty"):
        checkout.checkout(repo, cid, str(outside))
    with pytest.raises(UpdaterError, match="does not exist"):
        checkout.checkout(repo, cid, str(tmp_path / "no" / "such" / "dir"))


def test_crafted_tree_cannot_escape(tmp_path, committed):
    """A tree smuggling '..' never parses, so checkout never gets to write it."""
    repo, cid = committed
    from updater import cbor

    bad = cbor.encode({"files": [["..", bytes(32), objects.file_header(0o100644, 0, 0), 1]], "dirs": []})
    tx = repo.transaction()
    tid = tx.add_meta("tree", bad)
    mid = tx.add_meta("meta", objects.dirmeta(0o40755, 0, 0))
    tx.commit()
    data = objects.commit(tid, mid, None, 1, "", "", "b/evil")
    tx = repo.transaction()
    evil = tx.add_meta("commit", data)
    tx.commit()
    dest = tmp_path / "co"
    with pytest.raises(UnsafePathError, match="forbidden file name"):
        checkout.checkout(repo, evil, str(dest))
    assert not (tmp_path / "1").exists()


def test_corrupt_tree_named_on_checkout(tmp_path, committed):
    repo, cid = committed
    c = repo.load_commit(cid)
    path = repo.object_path(c.tree, "tree")
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(3)
        byte = f.read(1)
        f.seek(3)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(UpdaterError, match=objects.to_hex(c.tree)):
        checkout.checkout(repo, cid, str(tmp_path / "co"))
