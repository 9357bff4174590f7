"""Architecture rules checked on the source: what the device core may import and touch.

- Device-core modules (updater/ minus updater/host/) import at top level only modules the
  MicroPython unix port has, or other updater modules; anything else must sit inside a function
  or a ``try: ... except ImportError`` block (an optional speed-up with a fallback).
- The device core never imports updater.host.
- Only updater/fs/ (the file-system layer) touches the file system: no ``open(`` and no file-system ``os.`` calls in
  other device-core modules.
- Modules stay well under 500 lines.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "updater")

MICROPYTHON_HAS = {
    "sys", "os", "io", "struct", "hashlib", "binascii", "json", "errno", "time", "select", "socket",
    "ssl", "gc", "micropython", "deflate", "termios", "random", "re", "collections", "vfs", "array",
    "math", "heapq",
}
OS_ALLOWED_OUTSIDE_FS = {"urandom", "getenv", "getcwd", "uname", "environ", "getpid", "sep", "system", "isatty"}


def device_modules():
    out = []
    for dirpath, dirnames, filenames in os.walk(PKG):
        rel = os.path.relpath(dirpath, PKG)
        if rel == "host" or rel.startswith("host" + os.sep) or "__pycache__" in rel:
            continue
        for name in filenames:
            if name.endswith(".py"):
                out.append(os.path.join(dirpath, name))
    return sorted(out)


def all_modules():
    out = []
    for dirpath, _, filenames in os.walk(PKG):
        out += [os.path.join(dirpath, n) for n in filenames if n.endswith(".py")]
    return sorted(out)


def _guarded(node, parents):
    for parent in parents:
        if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return True
        if isinstance(parent, ast.Try):
            for handler in parent.handlers:
                names = []
                if isinstance(handler.type, ast.Name):
                    names = [handler.type.id]
                elif isinstance(handler.type, ast.Tuple):
                    names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
                if "ImportError" in names:
                    return True
    return False


def _walk_with_parents(tree):
    stack = [(tree, [])]
    while stack:
        node, parents = stack.pop()
        yield node, parents
        for child in ast.iter_child_nodes(node):
            stack.append((child, parents + [node]))


@pytest.mark.parametrize("path", device_modules(), ids=lambda p: os.path.relpath(p, ROOT))
def test_device_core_imports_only_what_micropython_has(path):
    tree = ast.parse(open(path).read(), path)
    for node, parents in _walk_with_parents(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                assert not (node.module or "").startswith("host"), "%s imports updater.host" % path
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "updater":
                assert not name.startswith("updater.host"), "%s imports updater.host" % path
                continue
            if top in MICROPYTHON_HAS or _guarded(node, parents):
                continue
            pytest.fail("%s:%d imports %s at top level; MicroPython lacks it (guard it or move it to updater/host/)"
                        % (os.path.relpath(path, ROOT), node.lineno, name))


@pytest.mark.parametrize("path", [p for p in device_modules() if os.sep + "updater" + os.sep + "fs" + os.sep not in p],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_only_fs_touches_the_file_system(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            pytest.fail("%s:%d calls open(); use updater.fs" % (os.path.relpath(path, ROOT), node.lineno))
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                and node.attr not in OS_ALLOWED_OUTSIDE_FS):
            pytest.fail("%s:%d uses os.%s; file-system calls belong in updater/fs/"
                        % (os.path.relpath(path, ROOT), node.lineno, node.attr))


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: os.path.relpath(p, ROOT))
def test_modules_stay_small(path):
    with open(path) as f:
        lines = sum(1 for _ in f)
    assert lines < 500, "%s has %d lines; split it by what it owns" % (os.path.relpath(path, ROOT), lines)
