"""Pull and install under MicroPython (and CPython): tests/mpy/net_pull.py against a local server.

The pytest side builds and publishes the repository states, serves them over HTTP, and passes
the URLs, key and expected commits to the script in environment variables.
"""

import os
import shutil
import subprocess
import sys

import pytest
from deltakit import Host
from test_micropython import MPY_DIR, ROOT, heap_of, micropython

from updater.host import bundler, serve
from updater.objects import to_hex

SCRIPT = "net_pull.py"
NOW = 1_700_000_500


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpypull")
    site = tmp / "site"
    site.mkdir()
    host = Host(tmp / "host", symlinks=False, big=40000)  # MicroPython stores no symlinks
    host.commit("1")
    host.delta("1")
    host.publish(now=NOW - 40)
    shutil.copytree(host.repo.path, str(site / "s1"))
    host.commit("2")
    host.delta("2", "1")
    host.publish(now=NOW - 30)
    shutil.copytree(host.repo.path, str(site / "s2"))
    host.commit("3")
    host.publish(now=NOW - 20)
    shutil.copytree(host.repo.path, str(site / "s3"))
    host.commit("4")
    host.delta("4", "3")
    host.publish(now=NOW - 10)
    bundle = str(tmp / "v4.bundle")
    bundler.write(host.repo, host.commits["4"], host.commits["3"], bundle)
    server = serve.start(str(site))
    env = {"PULL_URL%d" % i: "%s/s%d" % (server.url(), i) for i in (1, 2, 3)}
    env.update({"PULL_BUNDLE": bundle, "PULL_KEY": host.key.public.hex(), "PULL_NOW": str(NOW)})
    for v in ("1", "2", "3", "4"):
        env["PULL_C" + v] = to_hex(host.commits[v])
    yield env
    server.shutdown()
    server.server_close()


@pytest.mark.micropython
def test_pull_and_install_under_micropython(published, tmp_path):
    env = dict(os.environ, MICROPYPATH=ROOT + ":" + MPY_DIR, MPYTEST_TMP=str(tmp_path), **published)
    proc = subprocess.run([micropython(), "-X", "heapsize=" + heap_of(SCRIPT), os.path.join(MPY_DIR, SCRIPT)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "MicroPython run failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    assert "micropython: 5 passed, 0 failed" in proc.stdout, proc.stdout


def test_pull_and_install_under_cpython(published, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + MPY_DIR, MPYTEST_TMP=str(tmp_path), **published)
    proc = subprocess.run([sys.executable, os.path.join(MPY_DIR, SCRIPT)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "CPython run failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    assert "cpython: 5 passed, 0 failed" in proc.stdout, proc.stdout
