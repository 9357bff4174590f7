"""Runs the device-core test scripts of tests/mpy/ under the real MicroPython unix port.

Each script runs with a heap budget (``# heap: SIZE`` in its first lines, default 512K) and an
import path of only the repository and tests/mpy (no frozen modules, so nothing leaks in that a
device would lack). The same scripts also run under CPython, proving both interpreters agree.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY_DIR = os.path.join(ROOT, "tests", "mpy")
SCRIPTS = sorted(n for n in os.listdir(MPY_DIR) if n.startswith("test_") and n.endswith(".py"))


def micropython():
    for candidate in (os.path.join(os.path.dirname(sys.executable), "micropython"), shutil.which("micropython")):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.fail("the micropython interpreter is missing: run .ci/setup (pip extra 'test')")


def heap_of(script):
    with open(os.path.join(MPY_DIR, script)) as f:
        head = f.read(600)
    m = re.search(r"#\s*heap:\s*(\d+[KM])", head)
    return m.group(1) if m else "512K"


@pytest.mark.micropython
@pytest.mark.parametrize("script", SCRIPTS)
def test_under_micropython(script, tmp_path):
    env = dict(os.environ, MICROPYPATH=ROOT + ":" + MPY_DIR, MPYTEST_TMP=str(tmp_path))
    proc = subprocess.run([micropython(), "-X", "heapsize=" + heap_of(script), os.path.join(MPY_DIR, script)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "MicroPython run of %s failed:\n%s\n%s" % (script, proc.stdout, proc.stderr)
    assert "micropython:" in proc.stdout and " 0 failed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_under_cpython(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + MPY_DIR, MPYTEST_TMP=str(tmp_path))
    proc = subprocess.run([sys.executable, os.path.join(MPY_DIR, script)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "CPython run of %s failed:\n%s\n%s" % (script, proc.stdout, proc.stderr)


@pytest.mark.micropython
def test_micropython_reads_a_host_made_repository(tmp_path):
    """A repository committed by the host tools (CPython, cbor2 side) is read by MicroPython."""
    sys.path.insert(0, ROOT)
    from updater.host.commit import commit_source
    from updater.repo import Repo

    src = tmp_path / "src" / "etc"
    src.mkdir(parents=True)
    (src / "motd").write_bytes(b"welcome\n")
    (tmp_path / "src" / "usr").mkdir()
    (tmp_path / "src" / "usr" / "data").write_bytes(bytes(range(256)) * 100)
    repo = Repo.init(str(tmp_path / "repo"), "user")
    commit_source(repo, str(tmp_path / "src"), "host/stable", timestamp=1)
    env = dict(os.environ, MICROPYPATH=ROOT + ":" + MPY_DIR, MPYTEST_TMP=str(tmp_path), HOST_REPO=repo.path)
    proc = subprocess.run([micropython(), "-X", "heapsize=512K", os.path.join(MPY_DIR, "test_repo_mpy.py")],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   test_host_made_repository" in proc.stdout
