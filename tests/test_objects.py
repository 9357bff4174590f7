"""Object formats: canonical bytes, strict parsing, names that could escape."""

import hashlib

import pytest

from updater import cbor, objects
from updater.errors import FormatError, UnsafePathError

ID = bytes(range(32))


def test_file_header_is_canonical_and_roundtrips():
    h = objects.file_header(0o100644, 0, 0, {b"user.a": b"1"})
    parsed = objects.parse_file_header(h)
    assert (parsed.mode, parsed.uid, parsed.gid, parsed.xattrs) == (0o100644, 0, 0, {b"user.a": b"1"})
    link = objects.parse_file_header(objects.file_header(0o120777, 1, 2, target="../x"))
    assert link.is_link() and link.target == "../x"


def test_file_id_covers_header_and_content():
    h = objects.file_header(0o100644, 0, 0)
    hasher = objects.file_hasher(h)
    hasher.update(b"content")
    assert hasher.digest() == hashlib.sha256(h + b"content").digest()
    h2 = objects.file_header(0o100755, 0, 0)
    assert hashlib.sha256(h2 + b"content").digest() != hasher.digest()


@pytest.mark.parametrize("mode", [0o020644, 0o010644, 0o140644, 0o060644, 0o040755])
def test_special_modes_are_not_file_objects(mode):
    with pytest.raises(FormatError):
        objects.file_header(mode, 0, 0)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\x00b", "x" * 256])
def test_bad_names_refused(name):
    with pytest.raises(UnsafePathError):
        objects.check_name(name)
    with pytest.raises(UnsafePathError):
        objects.tree([(name, ID, objects.file_header(0o100644, 0, 0), 1)], [])


@pytest.mark.parametrize("name", ["..", "a/b", "."])
def test_crafted_tree_with_bad_name_refused_on_parse(name):
    data = cbor.encode({"files": [[name, ID, objects.file_header(0o100644, 0, 0), 1]], "dirs": []})
    with pytest.raises(UnsafePathError):
        objects.parse_tree(data)


def test_tree_sorted_unique_and_strict():
    h = objects.file_header(0o100644, 0, 0)
    data = objects.tree([("b", ID, h, 1), ("a", ID, h, 2)], [("c", ID, ID)])
    t = objects.parse_tree(data)
    assert [f[0] for f in t.files] == ["a", "b"]
    unsorted = cbor.encode({"files": [["b", ID, h, 1], ["a", ID, h, 2]], "dirs": []})
    with pytest.raises(FormatError, match="order"):
        objects.parse_tree(unsorted)
    both = cbor.encode({"files": [["a", ID, h, 1]], "dirs": [["a", ID, ID]]})
    with pytest.raises(FormatError, match="both a file and a directory"):
        objects.parse_tree(both)
    with pytest.raises(FormatError, match="twice"):
        objects.tree([("a", ID, h, 1)], [("a", ID, ID)])


def test_commit_roundtrip_and_truncation():
    data = objects.commit(ID, ID, None, 1700000000, "subject", "1.0", "qemu-arm64/stable", "qemu-arm64", {"k": 1})
    c = objects.parse_commit(data)
    assert (c.version, c.branch, c.board, c.metadata) == ("1.0", "qemu-arm64/stable", "qemu-arm64", {"k": 1})
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(FormatError):
            objects.parse_commit(data[:cut])
    missing = cbor.encode({"tree": ID})
    with pytest.raises(FormatError, match="missing field"):
        objects.parse_commit(missing)


@pytest.mark.parametrize("branch", ["", "/a", "a//b", ".hidden/x", "a/b.lock", "sp ace", "a/\x00"])
def test_bad_branch_names(branch):
    with pytest.raises(FormatError):
        objects.check_branch(branch)


def test_board_of_branch():
    assert objects.board_of_branch("qemu-arm64/stable") == "qemu-arm64"
    assert objects.board_of_branch("main") == ""


def test_booleans_are_not_integers():
    """CPython counts True as 1; MicroPython does not: both must refuse it the same way."""
    with pytest.raises(FormatError):
        objects.file_header(0o100644, True, 0)
    data = cbor.encode({"files": [["a", ID, objects.file_header(0o100644, 0, 0), True]], "dirs": []})
    with pytest.raises(FormatError):
        objects.parse_tree(data)
    with pytest.raises(FormatError):
        objects.commit(ID, ID, None, True, "", "", "b/s")


def _random_tree(rng):
    alphabet = "abcXYZ019._-\u00e9\u4e2d"
    names = set()
    while len(names) < rng.randrange(0, 12):
        names.add("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 30))))
    names = sorted(names)
    files, dirs = [], []
    for name in names:
        oid = bytes(rng.randrange(256) for _ in range(32))
        if rng.random() < 0.3:
            dirs.append((name, oid, bytes(rng.randrange(256) for _ in range(32))))
        else:
            header = objects.file_header(0o100000 | rng.choice([0o644, 0o755, 0o4755]), rng.choice([0, 1000, 70000]), 0)
            files.append((name, oid, header, rng.choice([0, 23, 24, 255, 256, 65536, 2 ** 32, 2 ** 40])))
    return objects.tree(files, dirs)


def _outcome(data, fast):
    try:
        t = objects.parse_tree(data, fast=fast)
        return ("ok", t.files, t.dirs)
    except (FormatError, UnsafePathError) as err:
        return ("error", type(err).__name__)


def test_fast_tree_reader_agrees_with_the_generic_decoder():
    """The checkout hot path reads trees straight from the bytes; it must accept and refuse
    exactly what the generic canonical decoder does, on valid trees and damaged ones."""
    import random

    rng = random.Random(7)
    for _ in range(400):
        data = _random_tree(rng)
        assert objects._scan_tree(data) is not None
        assert _outcome(data, True) == _outcome(data, False)
        for _ in range(8):
            damaged = bytearray(data)
            action = rng.randrange(3)
            if action == 0 and damaged:
                damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            elif action == 1:
                del damaged[rng.randrange(len(damaged) + 1):]
            else:
                damaged.insert(rng.randrange(len(damaged) + 1), rng.randrange(256))
            damaged = bytes(damaged)
            assert _outcome(damaged, True) == _outcome(damaged, False), damaged.hex()
