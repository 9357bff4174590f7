"""Looking paths up in a commit, with and without following symlinks inside it."""

import pytest

from updater import trees
from updater.errors import NotFoundError
from updater.host.commit import commit_source
from updater.repo import Repo


@pytest.fixture
def merged_usr(tmp_path, make_tree):
    """A merged-/usr tree as current Debian ships it, with absolute and looping links."""
    src = make_tree(str(tmp_path / "src"), {
        "usr/sbin/init-real": b"#!/bin/sh\n",
        "usr/lib/systemd/systemd": b"ELF",
        "sbin": ("link", "usr/sbin"),
        "lib": ("link", "usr/lib"),
        "usr/sbin/init": ("link", "/lib/systemd/systemd"),
        "boot/vmlinuz": ("link", "../boot/./vmlinuz-6.1"),
        "boot/vmlinuz-6.1": b"KERNEL",
        "loop/a": ("link", "b"),
        "loop/b": ("link", "a"),
        "up": ("link", "../../../usr"),
    })
    repo = Repo.init(str(tmp_path / "repo"))
    cid, _ = commit_source(repo, src, "b/stable", timestamp=1)
    return repo, cid


def test_follow_resolves_merged_usr_and_absolute_targets(merged_usr):
    repo, cid = merged_usr
    init = trees.lookup(repo, cid, "sbin/init", follow=True)
    assert init.kind == "file" and init.path == "/sbin/init" and init.size == 3
    assert repo.header(init.header).is_link() is False
    assert trees.lookup(repo, cid, "boot/vmlinuz", follow=True).size == 6
    assert trees.lookup(repo, cid, "up/sbin", follow=True).kind == "dir"  # '..' stops at the root


def test_without_follow_a_symlink_is_the_entry_itself(merged_usr):
    repo, cid = merged_usr
    entry = trees.lookup(repo, cid, "usr/sbin/init")
    assert repo.header(entry.header).target == "/lib/systemd/systemd"
    with pytest.raises(NotFoundError, match="not a directory"):
        trees.lookup(repo, cid, "sbin/init")


def test_loops_and_missing_targets_are_not_found(merged_usr):
    repo, cid = merged_usr
    with pytest.raises(NotFoundError, match="symlinks"):
        trees.lookup(repo, cid, "loop/a", follow=True)
    with pytest.raises(NotFoundError, match="no such file"):
        trees.lookup(repo, cid, "sbin/nothing", follow=True)
