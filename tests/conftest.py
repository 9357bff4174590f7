import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# tests/mpy holds scripts for the MicroPython harness (run by test_micropython.py), not pytest files.
collect_ignore = ["mpy"]


import io  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402


class CliResult:
    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "CliResult(rc=%d, out=%r, err=%r)" % (self.rc, self.out[-2000:], self.err[-2000:])


@pytest.fixture
def cli():
    """Run ``updater`` in-process: cli("--repo", r, "init") -> CliResult(rc, out, err)."""
    from updater.cli import main

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        rc = main([str(a) for a in argv], stdout=out, stderr=err)
        return CliResult(rc, out.getvalue(), err.getvalue())

    return run


def write_tree(root, spec):
    """Create files from {relpath: content bytes | ("link", target) | ("dir",)}; returns root."""
    os.makedirs(root, exist_ok=True)
    for rel in sorted(spec):
        value = spec[rel]
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(value, tuple) and value[0] == "link":
            os.symlink(value[1], path)
        elif isinstance(value, tuple) and value[0] == "dir":
            os.makedirs(path, exist_ok=True)
        else:
            with open(path, "wb") as f:
                f.write(value)
    return root


SAMPLE = {
    "etc/motd": b"welcome\n",
    "etc/hostname": b"device\n",
    "etc/empty.conf": b"",
    "usr/bin/tool": b"\x7fELF" + bytes(range(256)) * 40,
    "usr/lib/libfoo.so.1.2": b"library" * 1000,
    "usr/lib/libfoo.so.1": ("link", "libfoo.so.1.2"),
    "bin": ("link", "usr/bin"),
    "var/lib/empty": ("dir",),
}


@pytest.fixture
def sample_tree(tmp_path):
    root = write_tree(str(tmp_path / "src"), SAMPLE)
    os.chmod(os.path.join(root, "usr/bin/tool"), 0o4755)
    return root


@pytest.fixture
def make_tree():
    """write_tree(root, spec) for tests (a fixture: test modules do not import conftest)."""
    return write_tree
