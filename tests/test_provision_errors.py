"""Provisioning's bad inputs: each a clear error, and nothing partial left at the output path."""

import os
import shutil
import subprocess

import pytest

from provkit import Source, missing_tool, part_device
from updater.errors import IntegrityError, NotFoundError, SpaceError, StorageError, TrustError, UsageError
from updater.host import provision, sysrootseed

pytestmark = pytest.mark.skipif(missing_tool() is not None, reason=missing_tool() or "")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    s = Source(str(tmp_path_factory.mktemp("proverr")))
    s.commit("1.0")
    s.commit("1.0", branch="qemu-arm/stable")
    s.commit("1.0", branch="qemu-arm64/unsigned", sign=False)
    s.commit("1.0", branch="beaglebone-black/stable")
    return s


def leftovers(directory):
    return sorted(os.listdir(str(directory)))


def provision_cli(cli, src, out, *extra):
    return cli("provision", "--board", "qemu-arm64", "--repo", src.path, "--output", str(out), "--size", "64M",
               "--key-pub", src.pub, *extra)


def test_unknown_board(cli, src, tmp_path):
    r = cli("provision", "--board", "no-such-board", "--repo", src.path, "--ref", "qemu-arm64/stable",
            "--output", str(tmp_path / "x.img"))
    assert r.rc == 1 and "finding board 'no-such-board'" in r.err and "board list" in r.err
    assert leftovers(tmp_path) == []


def test_commit_made_for_another_board(cli, src, tmp_path):
    r = provision_cli(cli, src, tmp_path / "x.img", "--ref", "qemu-arm/stable")
    assert r.rc == 1
    assert "made for board 'qemu-arm'" in r.err and "onto board qemu-arm64" in r.err and "qemu-arm64/stable" in r.err
    assert leftovers(tmp_path) == []


def test_unsigned_commit_where_the_board_requires_signatures(cli, src, tmp_path):
    r = provision_cli(cli, src, tmp_path / "x.img", "--ref", "qemu-arm64/unsigned")
    assert r.rc == 1 and "not signed" in r.err
    r = cli("provision", "--board", "qemu-arm64", "--repo", src.path, "--ref", "qemu-arm64/stable",
            "--output", str(tmp_path / "x.img"))
    assert r.rc == 2 and "requires signed commits" in r.err and "--key-pub" in r.err
    assert leftovers(tmp_path) == []


def test_commit_signed_by_another_key(src, tmp_path):
    other = Source(str(tmp_path / "other"))
    with pytest.raises(TrustError, match="unknown keys"):
        provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(tmp_path / "x.img"),
                                  key_pub=[other.pub])
    assert leftovers(tmp_path) == ["other"]


def test_image_too_small_says_by_how_much_and_the_estimate_suffices(src, tmp_path):
    need = provision.needed_size("qemu-arm64", src.path, "qemu-arm64/stable", [src.pub])
    assert need["image"] % (1 << 20) == 0 and need["image"] > need["sysroot"]
    small = need["image"] - (1 << 20)
    with pytest.raises(UsageError) as err:
        provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(tmp_path / "x.img"),
                                  size=small, key_pub=[src.pub])
    text = str(err.value)
    assert "too small" in text and "at least %d bytes" % need["image"] in text and "1048576 more" in text
    assert "--size %dM" % (need["image"] >> 20) in err.value.hint
    assert leftovers(tmp_path) == []
    rec = provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(tmp_path / "x.img"),
                                    size=need["image"], key_pub=[src.pub])
    res = subprocess.run(["e2fsck", "-fn", part_device(rec["image"], 2048)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stdout.decode()


def _tmpfs(path, size):
    os.makedirs(path)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", path], stderr=subprocess.PIPE)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % res.stderr.decode().strip())


def test_full_disk_at_the_output_path(src, tmp_path):
    small = str(tmp_path / "small")
    _tmpfs(small, 8 << 20)
    try:
        with pytest.raises(SpaceError) as err:
            provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", os.path.join(small, "x.img"),
                                      size="64M", key_pub=[src.pub])
        assert "bytes free" in str(err.value) and "more" in str(err.value)
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", small])


@pytest.mark.parametrize("left", [1 << 20, 6 << 20, 40 << 20])
def test_disk_filling_up_midway_leaves_nothing(src, tmp_path, monkeypatch, left):
    """The free-space check passes, then another writer fills the disk, leaving ``left`` bytes:
    a write runs out of space (while staging the sysroot, making the file systems, or writing
    the 64 MiB env image); a clear error, and only the other writer's file remains."""
    mid = str(tmp_path / "mid")
    _tmpfs(mid, 128 << 20)
    check = provision._check_space

    def check_then_fill(directory, need, doing):
        check(directory, need, doing)
        st = os.statvfs(mid)
        with open(os.path.join(mid, "other-writer"), "wb") as f:
            f.write(b"\x01" * (st.f_bavail * st.f_frsize - left))

    monkeypatch.setattr(provision, "_check_space", check_then_fill)
    try:
        with pytest.raises(StorageError) as err:
            provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", os.path.join(mid, "x.img"),
                                      size="96M", key_pub=[src.pub])
        assert "space" in str(err.value).lower(), str(err.value)
        assert str(err.value).startswith("provisioning %s" % os.path.join(mid, "x.img"))
        assert "nothing was left behind" in err.value.hint
        assert os.listdir(mid) == ["other-writer"]
    finally:
        subprocess.run(["umount", mid])


def test_a_failure_keeps_the_previous_image(src, tmp_path, monkeypatch):
    out = tmp_path / "x.img"
    out.write_bytes(b"the image of yesterday")

    def broken(*a, **kw):
        raise StorageError("compiling the boot script: simulated failure")

    monkeypatch.setattr(sysrootseed, "compile_boot_script", broken)
    with pytest.raises(StorageError, match="simulated"):
        provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(out), size="64M", key_pub=[src.pub])
    assert out.read_bytes() == b"the image of yesterday"
    assert leftovers(tmp_path) == ["x.img"]


def test_bad_unit_values(cli, src, tmp_path):
    r = provision_cli(cli, src, tmp_path / "x.img", "--ref", "qemu-arm64/stable", "--set", "upd_current=x")
    assert r.rc == 2 and "boot contract" in r.err
    r = provision_cli(cli, src, tmp_path / "x.img", "--ref", "qemu-arm64/stable", "--set", "serial")
    assert r.rc == 2 and "NAME=VALUE" in r.err
    with pytest.raises(UsageError, match="serial"):
        provision.provision_image("qemu-arm64", src.path, "qemu-arm64/stable", str(tmp_path / "x.img"),
                                  size="64M", key_pub=[src.pub], unit_values={"serial": "a\nb"})
    assert leftovers(tmp_path) == []


def test_corrupt_object_in_the_source_repository(src, tmp_path):
    copy = str(tmp_path / "repo")
    shutil.copytree(src.path, copy, symlinks=True)
    commit = src.commits[("qemu-arm64/stable", "1.0")]
    from updater.repo import Repo

    repo = Repo.open(copy)
    tree = repo.load_tree(repo.load_commit(commit).tree)
    boot = [d for d in tree.dirs if d[0] == "boot"][0]
    oid = [f for f in repo.load_tree(boot[1]).files if f[0] == "vmlinuz"][0][1]
    path = repo.object_path(oid, "file")
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"XX")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(IntegrityError, match="vmlinuz"):
        provision.provision_image("qemu-arm64", copy, "qemu-arm64/stable", str(out_dir / "x.img"), size="64M",
                                  key_pub=[src.pub])
    assert leftovers(out_dir) == []


def test_board_without_default_env_needs_no_env(src, tmp_path):
    from updater.errors import ConfigError

    with pytest.raises(ConfigError, match="default_env"):
        provision.provision_image("beaglebone-black", src.path, "beaglebone-black/stable", str(tmp_path / "b.img"),
                                  size="64M", key_pub=[src.pub])
    rec = provision.provision_image("beaglebone-black", src.path, "beaglebone-black/stable", str(tmp_path / "b.img"),
                                    size="64M", key_pub=[src.pub], write_env=False)
    assert rec["env"]["written_to"] is None
    with open(str(tmp_path / "b.img"), "rb") as f:
        f.seek(0x260000)
        assert f.read(0x40000) == bytes(0x40000)  # no env written into the raw eMMC area


def test_missing_repository_and_ref(src, tmp_path):
    from updater.errors import ConfigError

    with pytest.raises(ConfigError, match="not an updater repository"):
        provision.provision_image("qemu-arm64", str(tmp_path), "x", str(tmp_path / "x.img"))
    with pytest.raises(NotFoundError, match="no-such-branch"):
        provision.provision_image("qemu-arm64", src.path, "qemu-arm64/no-such-branch", str(tmp_path / "x.img"))
    assert leftovers(tmp_path) == []


def test_remote_the_device_cannot_fetch_from(cli, src, tmp_path):
    r = provision_cli(cli, src, tmp_path / "x.img", "--ref", "qemu-arm64/stable", "--remote", "ftp://host/repo")
    assert r.rc == 2 and "http://HOST[:PORT]/PATH or file:///PATH" in r.err
    assert leftovers(tmp_path) == []
