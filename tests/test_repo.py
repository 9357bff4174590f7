"""The repository: init/open, object store, refs, revision resolution, fsck, prune."""

import os

import pytest

from updater import fsck, objects, prune
from updater.errors import AmbiguousError, ConfigError, IntegrityError, NotFoundError
from updater.host.commit import commit_source
from updater.repo import Repo


def make_repo(tmp_path, sample_tree, commits=1):
    repo = Repo.init(str(tmp_path / "repo"))
    ids = []
    for i in range(commits):
        with open(os.path.join(sample_tree, "etc/motd"), "wb") as f:
            f.write(b"version %d\n" % i)
        cid, _ = commit_source(repo, sample_tree, "test/stable", version="%d" % i, timestamp=1000 + i)
        ids.append(cid)
    return repo, ids


def test_init_is_idempotent_and_refuses_foreign_dirs(tmp_path):
    repo = Repo.init(str(tmp_path / "r"))
    assert Repo.init(str(tmp_path / "r")).mode == repo.mode
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        Repo.init(str(tmp_path / "full"))
    with pytest.raises(ConfigError, match="not an updater repository"):
        Repo.open(str(tmp_path / "full"))


def test_config_unknown_key_and_format(tmp_path):
    repo = Repo.init(str(tmp_path / "r"))
    cfg = os.path.join(repo.path, "config")
    with open(cfg, "a") as f:
        f.write("colour = blue\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        Repo.open(repo.path)
    with open(cfg, "w") as f:
        f.write("[repo]\nformat = 9\nmode = bare\n")
    with pytest.raises(ConfigError, match="format 9"):
        Repo.open(repo.path)


def test_resolve_branch_full_prefix_parent(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree, 3)
    assert repo.resolve("test/stable") == ids[2]
    assert repo.resolve(objects.to_hex(ids[1])) == ids[1]
    assert repo.resolve(objects.to_hex(ids[0])[:10]) == ids[0]
    assert repo.resolve("test/stable^^") == ids[0]
    with pytest.raises(NotFoundError, match="no parent"):
        repo.resolve("test/stable^^^")
    with pytest.raises(NotFoundError, match="no branch or commit"):
        repo.resolve("nope")
    with pytest.raises(NotFoundError):
        repo.resolve("0" * 64)


def test_ambiguous_prefix(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree, 1)
    # Plant a second commit object sharing the first 4 hex digits (a copy under a crafted name).
    h = objects.to_hex(ids[0])
    fake = h[:4] + ("0" if h[4] != "0" else "1") + h[5:]
    src = repo.object_path(ids[0], "commit")
    os.link(src, repo.object_path(bytes.fromhex(fake), "commit"))
    with pytest.raises(AmbiguousError, match="matches 2 commits"):
        repo.resolve(h[:4])


def test_read_object_detects_flipped_byte_and_missing(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree)
    commit = repo.load_commit(ids[0])
    path = repo.object_path(commit.tree, "tree")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(IntegrityError, match=objects.to_hex(commit.tree)):
        repo.load_tree(commit.tree)
    os.remove(path)
    with pytest.raises(NotFoundError, match="missing"):
        repo.load_tree(commit.tree)


def test_fsck_reports_corrupt_file_object_and_bad_mode(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree)
    report = fsck.fsck(repo)
    assert report.as_dict()["ok"], report.problems
    tree = repo.load_tree(repo.load_tree(repo.load_commit(ids[0]).tree).find("usr")[1][1])
    lib = repo.load_tree(tree.find("lib")[1][1])
    entry = [f for f in lib.files if f[0] == "libfoo.so.1.2"][0]
    path = repo.object_path(entry[1], "file")
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"X")
    report = fsck.fsck(repo)
    assert not report.as_dict()["ok"]
    assert any(objects.to_hex(entry[1]) == p["object"] and "corrupt" in p["problem"] for p in report.problems)


@pytest.mark.skipif(os.geteuid() != 0, reason="bare repositories need root")
def test_fsck_sees_mode_changed_through_a_hardlink(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree)
    tree = repo.load_tree(repo.load_commit(ids[0]).tree)
    etc = repo.load_tree(tree.find("etc")[1][1])
    entry = [f for f in etc.files if f[0] == "motd"][0]
    os.chmod(repo.object_path(entry[1], "file"), 0o666)
    problems = fsck.fsck(repo).problems
    assert any("mode is 0o100666" in p["problem"] for p in problems), problems


def test_truncated_commit_named(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree)
    path = repo.object_path(ids[0], "commit")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match=objects.to_hex(ids[0])):
        repo.load_commit(ids[0])
    assert not fsck.fsck(repo).as_dict()["ok"]


def test_prune_keeps_newest_and_reachable(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree, 3)
    result = prune.prune(repo, keep=1)
    assert result["removed"]["commit"] == 2
    assert result["removed"]["file"] == 2  # the two older /etc/motd contents
    assert not repo.has(ids[0], "commit") and repo.has(ids[2], "commit")
    assert fsck.fsck(repo).as_dict()["ok"]
    assert repo.log(ids[2]) and len(repo.log(ids[2])) == 1


def test_refs_listing_and_nested_names(tmp_path, sample_tree):
    repo, ids = make_repo(tmp_path, sample_tree)
    repo.write_ref("board-b/testing", ids[0])
    assert repo.list_refs() == {"test/stable": ids[0], "board-b/testing": ids[0]}
    repo.delete_ref("board-b/testing")
    assert "board-b/testing" not in repo.list_refs()
