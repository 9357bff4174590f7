"""Committing directories and tar archives: fidelity, formats, bad input, interruption."""

import io
import os
import stat
import subprocess
import sys
import tarfile

import pytest

from updater import fsck, objects, trees
from updater.errors import FormatError, UnsafePathError, UpdaterError
from updater.host.commit import commit_source
from updater.repo import Repo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def listing(repo, cid):
    out = {}
    for e in trees.walk(repo, repo.load_commit(cid).tree):
        if e.kind == "dir":
            m = repo.load_dirmeta(e.meta)
            out[e.path] = ("dir", m.mode, m.uid, m.gid)
        else:
            h = repo.header(e.header)
            out[e.path] = ("link", h.target) if h.is_link() else ("file", h.mode, h.uid, h.gid, e.size, h.xattrs)
    return out


def xattrs_supported(path):
    try:
        os.setxattr(path, "user.probe", b"1")
        return True
    except OSError:
        return False


def test_directory_commit_keeps_modes_owners_links_xattrs(tmp_path, sample_tree):
    tool = os.path.join(sample_tree, "usr/bin/tool")
    os.chown(os.path.join(sample_tree, "etc/motd"), 1234, 99) if os.geteuid() == 0 else None
    has_x = xattrs_supported(tool)
    if has_x:
        os.setxattr(tool, "user.checksum", b"\x00\xffbinary")
    repo = Repo.init(str(tmp_path / "repo"))
    cid, stats = commit_source(repo, sample_tree, "b/stable", subject="s", version="1.0")
    got = listing(repo, cid)
    assert got["/bin"] == ("link", "usr/bin")
    assert got["/usr/lib/libfoo.so.1"] == ("link", "libfoo.so.1.2")
    assert got["/usr/bin/tool"][1] == stat.S_IFREG | 0o4755
    assert got["/etc/empty.conf"][4] == 0
    assert got["/var/lib/empty"][0] == "dir"
    if os.geteuid() == 0:
        assert got["/etc/motd"][2:4] == (1234, 99)
    if has_x:
        assert got["/usr/bin/tool"][5][b"user.checksum"] == b"\x00\xffbinary"
    c = repo.load_commit(cid)
    assert (c.subject, c.version, c.branch, c.board) == ("s", "1.0", "b/stable", "b")
    assert fsck.fsck(repo).as_dict()["ok"]


def make_tar(path, mode, sample_tree):
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        tar.add(sample_tree, arcname=".")
        data = b"hard-linked content"
        info = tarfile.TarInfo("./usr/share/a")
        info.size = len(data)
        info.mode = 0o640
        info.uid, info.gid = 7, 8
        info.pax_headers = {"SCHILY.xattr.user.k": "v"}
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./usr/share/b")
        link.type = tarfile.LNKTYPE
        link.linkname = "./usr/share/a"
        tar.addfile(link)


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tar.xz", "w:xz"), (".tar.zst", None)])
def test_tar_formats_match_directory_commit(tmp_path, sample_tree, suffix, mode):
    repo = Repo.init(str(tmp_path / "repo"))
    plain = str(tmp_path / "t.tar")
    make_tar(plain, "w", sample_tree)
    path = str(tmp_path / ("t" + suffix))
    if mode and mode != "w":
        make_tar(path, mode, sample_tree)
    elif suffix == ".tar.zst":
        subprocess.run(["zstd", "-q", "-f", plain, "-o", path], check=True)
    cid, _ = commit_source(repo, path, "b/stable", timestamp=1)
    got = listing(repo, cid)
    assert got["/usr/share/a"] == ("file", 0o100640, 7, 8, 19, {b"user.k": b"v"})
    assert got["/usr/share/b"] == got["/usr/share/a"]
    assert got["/bin"] == ("link", "usr/bin")
    assert got["/usr/bin/tool"][1] == 0o104755
    assert fsck.fsck(repo).as_dict()["ok"]


def test_same_content_is_stored_once_and_commits_are_reproducible(tmp_path, sample_tree):
    repo = Repo.init(str(tmp_path / "repo"))
    a, _ = commit_source(repo, sample_tree, "b/one", timestamp=5, parent=None)
    b, stats = commit_source(repo, sample_tree, "b/one", timestamp=5, parent=None)
    assert a == b
    assert stats["new_objects"] == 1  # only the (identical) commit object is re-staged


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_files_refused_with_path_or_skipped(tmp_path, sample_tree, kind):
    special = os.path.join(sample_tree, "etc", "special")
    if kind == "fifo":
        os.mkfifo(special)
    else:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(special)
    repo = Repo.init(str(tmp_path / "repo"))
    with pytest.raises(UnsafePathError, match="etc/special") as err:
        commit_source(repo, sample_tree, "b/stable")
    assert "--skip-special" in err.value.hint
    assert repo.list_refs() == {}
    warned = []
    cid, _ = commit_source(repo, sample_tree, "b/stable", skip_special=True, warn=warned.append)
    assert warned and "etc/special" in warned[0]
    assert "/etc/special" not in listing(repo, cid)


def tar_with(tmp_path, name, kind=tarfile.REGTYPE, linkname=""):
    path = str(tmp_path / "evil.tar")
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        data = b"x" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../escape", "a/../../etc/passwd", "/etc/passwd"])
def test_tar_path_traversal_refused(tmp_path, name):
    repo = Repo.init(str(tmp_path / "repo"))
    with pytest.raises(UnsafePathError, match="refused"):
        commit_source(repo, tar_with(tmp_path, name), "b/stable")
    assert repo.list_refs() == {}


def test_tar_device_node_refused(tmp_path):
    repo = Repo.init(str(tmp_path / "repo"))
    with pytest.raises(UnsafePathError, match="dev/null.*device nodes"):
        commit_source(repo, tar_with(tmp_path, "./dev/null", tarfile.CHRTYPE), "b/stable")


def test_truncated_and_garbage_archives(tmp_path, sample_tree):
    repo = Repo.init(str(tmp_path / "repo"))
    plain = str(tmp_path / "t.tar")
    make_tar(plain, "w", sample_tree)
    data = open(plain, "rb").read()
    cut = str(tmp_path / "cut.tar")
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2 + 100])
    with pytest.raises(FormatError, match="cut.tar"):
        commit_source(repo, cut, "b/stable")
    junk = str(tmp_path / "junk.tar.gz")
    with open(junk, "wb") as f:
        f.write(b"not gzip at all" * 100)
    with pytest.raises(FormatError, match="junk.tar.gz"):
        commit_source(repo, junk, "b/stable")
    assert repo.list_refs() == {}
    assert os.listdir(repo.tmp_dir) == []


def test_missing_source_and_non_archive(tmp_path):
    repo = Repo.init(str(tmp_path / "repo"))
    with pytest.raises(UpdaterError, match="no such file"):
        commit_source(repo, str(tmp_path / "nope"), "b/stable")
    other = tmp_path / "notes.txt"
    other.write_text("hi")
    with pytest.raises(FormatError, match="not a directory or a tar archive"):
        commit_source(repo, str(other), "b/stable")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop the DAC capabilities")
def test_unreadable_file_named(tmp_path, sample_tree, cli):
    secret = os.path.join(sample_tree, "etc", "secret")
    with open(secret, "w") as f:
        f.write("x")
    os.chmod(secret, 0)
    repo = str(tmp_path / "repo")
    assert cli("--repo", repo, "init").rc == 0
    # Root reads everything; without CAP_DAC_OVERRIDE/READ_SEARCH a mode-000 file is unreadable.
    proc = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                           sys.executable, "-m", "updater", "--repo", repo, "commit", "--branch", "b/s", sample_tree],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1, proc.stderr
    assert "etc/secret" in proc.stderr and "permission denied" in proc.stderr.lower()
    assert proc.stderr.count("\n") <= 2
    assert Repo.open(repo).list_refs() == {}


CRASHER = """
import os, sys
sys.path.insert(0, %(root)r)
from updater import fs
from updater.host.commit import commit_source
from updater.repo import Repo
k = int(sys.argv[1]); n = [0]
def hook(op, path):
    n[0] += 1
    if n[0] == k:
        os._exit(77)
fs.set_hook(hook)
commit_source(Repo.open(sys.argv[2]), sys.argv[3], "b/stable", timestamp=2)
fs.set_hook(None)
print("ops", n[0])
"""


def test_interrupted_commit_leaves_repository_as_it_was(tmp_path, sample_tree):
    repo = Repo.init(str(tmp_path / "repo"))
    first, _ = commit_source(repo, sample_tree, "b/stable", timestamp=1)
    with open(os.path.join(sample_tree, "etc/motd"), "wb") as f:
        f.write(b"changed\n")
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER % {"root": ROOT})
    pristine = str(tmp_path / "pristine")
    subprocess.run(["cp", "-a", repo.path, pristine], check=True)
    total = subprocess.run([sys.executable, str(script), "0", repo.path, sample_tree],
                           capture_output=True, text=True, check=True)
    n_ops = int(total.stdout.split()[-1])
    assert n_ops > 10
    for k in range(1, n_ops + 1):
        work = str(tmp_path / "work")
        subprocess.run(["rm", "-rf", work], check=True)
        subprocess.run(["cp", "-a", pristine, work], check=True)
        proc = subprocess.run([sys.executable, str(script), str(k), work, sample_tree], capture_output=True)
        assert proc.returncode == 77, (k, proc.stderr)
        again = Repo.open(work)
        head = again.read_ref("b/stable")
        if k < n_ops:  # the ref rename is the last durable step but one (its directory sync)
            assert head == first, k
        assert head == first or again.load_commit(head).parent == first
        report = fsck.fsck(again)
        assert report.as_dict()["ok"], (k, report.problems)
        commit_source(again, sample_tree, "b/stable", timestamp=3)  # the next commit works
        assert os.listdir(again.tmp_dir) == []
        assert fsck.fsck(again).as_dict()["ok"]
