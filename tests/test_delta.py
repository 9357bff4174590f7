"""Static deltas: format bounds, generation choices (bases by path, name and stem; copy; no diff of
compressed files), application with every check, and bad parts refused before parsing."""

import hashlib
import os
import shutil
import struct
import zlib

import bsdiff4.core
import pytest
from deltakit import BOARD, Host, tree_files

from updater import checkout, delta, deltaapply, fsck, objects
from updater.errors import ConfigError, FormatError, IntegrityError, NotFoundError, UsageError
from updater.host import deltagen
from updater.repo import Repo


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("host")
    h = Host(tmp)
    h.commit("1")
    h.commit("2")
    return h


def device_with(tmp_path, host, versions):
    """A user-mode repository holding exactly the objects of the given commits (copied)."""
    repo = Repo.init(str(tmp_path / "dev"), "user")
    from updater import trees

    tx = repo.transaction()
    for v in versions:
        cid = host.commits[v]
        for oid, kind, header, size in trees.reachable(host.repo, [cid]).values():
            if kind == "file":
                if host.repo.header(header).is_link():
                    tx.add_symlink(header)
                else:
                    tx.add_file_path(header, host.repo.object_path(oid, "file"))
            else:
                tx.add_meta(kind, host.repo.read_object(oid, kind))
    tx.commit()
    return repo


def load(host, to, frm=None):
    d = host.delta_dir(to, frm)
    with open(os.path.join(d, "superblock"), "rb") as f:
        data = f.read()
    return d, data, delta.parse_superblock(data)


def apply_all(repo, d, sb):
    n = 0
    for p in sb.parts:
        n += deltaapply.apply_part(repo, os.path.join(d, str(p.index)), p)
    tx = repo.transaction()
    tx.add_meta("commit", sb.commit)
    tx.commit()
    return n


def checkout_equal(tmp_path, host, repo, version):
    a, b = str(tmp_path / ("co-dev-" + version)), str(tmp_path / ("co-host-" + version))
    checkout.checkout(repo, host.commits[version], a)
    checkout.checkout(host.repo, host.commits[version], b)
    assert tree_files(a) == tree_files(b)


@pytest.mark.parametrize("codec", ["zlib", "xz"])
def test_delta_from_v1_applies_and_is_small(tmp_path, host, codec):
    stats = host.delta("2", "1", codec)
    assert stats["bsdiff"] >= 3 and stats["copy"] == 1 and stats["link"] == 1 and stats["tree_patches"] >= 1
    d, data, sb = load(host, "2", "1")
    assert sb.from_id == host.commits["1"] and sb.to_id == host.commits["2"]
    assert hashlib.sha256(sb.commit).digest() == host.commits["2"]
    repo = device_with(tmp_path, host, ["1"])
    n = apply_all(repo, d, sb)
    assert n == stats["objects"]
    repo.write_ref("qemu-arm64/stable", host.commits["2"])
    assert fsck.fsck(repo).as_dict()["ok"]
    checkout_equal(tmp_path, host, repo, "2")
    # the delta is far smaller than the new objects it makes
    assert stats["size"] < stats["usize"] and stats["size"] * 3 < sb.object_bytes()


def test_full_delta_makes_a_repository_from_nothing(tmp_path, host):
    stats = host.delta("2", None)
    assert stats["bsdiff"] == 0 and stats["from"] is None
    d, data, sb = load(host, "2")
    assert sb.from_id is None
    repo = Repo.init(str(tmp_path / "empty"), "user")
    apply_all(repo, d, sb)
    repo.write_ref("qemu-arm64/stable", host.commits["2"])
    assert fsck.fsck(repo).as_dict()["ok"]
    checkout_equal(tmp_path, host, repo, "2")


def test_parts_are_bounded_and_each_applies(tmp_path, host):
    stats = host.delta("2", "1", part_size=8192)
    d, data, sb = load(host, "2", "1")
    assert stats["parts"] == len(sb.parts) > 2
    for p in sb.parts:
        assert p.usize <= 8192 or len(p.objects) == 1
    repo = device_with(tmp_path, host, ["1"])
    apply_all(repo, d, sb)
    checkout_equal(tmp_path, host, repo, "2")


def test_bases_by_path_name_and_stem(host):
    from updater.host.deltagen import BaseFinder, _index_commit

    files, _ = _index_commit(host.repo, host.commits["1"])
    finder = BaseFinder(host.repo, files)
    assert finder.find("/usr/bin/tool", 60000).path == "/usr/bin/tool"
    assert finder.find("/usr/lib/libfoo.so.1.2", 60000).path == "/usr/lib/libfoo.so.1.1"
    assert finder.find("/usr/lib/modules/6.1.0-2/kernel/drv.ko", 30000).path == "/usr/lib/modules/6.1.0-1/kernel/drv.ko"
    assert finder.find("/usr/lib/libfoo.so.1.2", 600000) is None  # size differs by more than 30%
    assert finder.find("/usr/lib/libfoo.so.1", 60000).path == "/usr/lib/libfoo.so.1.1"  # never the symlink there
    jobs, _, _ = deltagen.plan(host.repo, host.commits["2"], host.commits["1"])
    by_path = dict((j[1], j) for j in jobs if j[0] != "link")
    assert by_path["/usr/share/doc/changes.xz"][5] is not None  # it has a base ...
    op, method = deltagen.file_op(by_path["/usr/share/doc/changes.xz"])
    assert method == "new"  # ... but compressed files are sent whole
    op, method = deltagen.file_op(by_path["/usr/sbin/daemon"])
    assert method == "copy" and op[0] == delta.OP_COPY


def test_codec_choice_follows_the_board(tmp_path):
    assert deltagen.choose_codec(None, None) == "zlib"
    assert deltagen.choose_codec(None, BOARD) == "xz"
    assert deltagen.choose_codec("zlib", BOARD) == "zlib"
    conf = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "board-configs", BOARD + ".conf")).read()
    small = tmp_path / "small.conf"
    small.write_text(conf.replace("codecs = zlib xz", "codecs = zlib"))
    assert deltagen.choose_codec(None, str(small)) == "zlib"
    with pytest.raises(ConfigError, match="cannot decompress xz"):
        deltagen.choose_codec("xz", str(small))
    with pytest.raises(UsageError):
        deltagen.choose_codec("lz4", None)


# --- bad superblocks and parts -------------------------------------------------------------------
def test_superblock_bounds():
    good = delta.encode_superblock(None, b"t" * 32, b"commit", [("zlib", 10, 20, b"h" * 32, [("file", b"f" * 32, 5)])])
    assert delta.parse_superblock(good).parts[0].objects == [("file", b"f" * 32, 5)]
    from updater import cbor

    def mutate(**kw):
        value = cbor.decode(good)
        value.update(kw)
        return cbor.encode(value)

    part = cbor.decode(good)["parts"][0]
    bad = [
        mutate(format=2), mutate(extra=1), mutate(to=b"short"), mutate(**{"from": b"x"}), mutate(commit="text"),
        mutate(parts=[dict(part, codec="lz4")]), mutate(parts=[dict(part, size=0)]),
        mutate(parts=[dict(part, usize=1 << 40)]), mutate(parts=[dict(part, objects=b"\x01" * 40)]),
        mutate(parts=[dict(part, objects=b"\x09" + b"f" * 32 + bytes(8))]),
        mutate(parts=[dict(part, objects=b"\x02" + b"f" * 32 + struct.pack(">Q", 1 << 30))]),
        mutate(parts=[dict(part, usize=0)]), b"\xff" + good, good[:-3],
    ]
    for data in bad:
        with pytest.raises(FormatError):
            delta.parse_superblock(data)


def _reader(stream, objs):
    part = delta.Part(0, "zlib", 1, len(stream), b"h" * 32, objs)
    pos = [0]

    def read(n):
        out = stream[pos[0]:pos[0] + n]
        pos[0] += n
        return out

    return delta.PartReader(read, part, "part 0")


def test_part_records_are_bounded_by_the_signed_sizes():
    hdr = objects.file_header(0o100644, 0, 0)
    oid = hashlib.sha256(hdr + b"abc").digest()
    ok = delta.op_file(hdr, b"abc")
    r = _reader(ok, [("file", oid, 3)])
    op = r.next_op()
    assert op.code == delta.OP_FILE and r.read(3) == b"abc" and r.next_op() is None
    cases = [
        (ok + b"x", [("file", oid, 3)], "left after"),                        # trailing bytes
        (ok, [("file", oid, 4)], "content bytes"),                            # size beyond the part
        (delta.op_raw(b"abc"), [("file", oid, 3)], "does not make"),         # opcode for another kind
        (ok, [("tree", oid, 3)], "does not make"),
        (b"Z" + ok[1:], [("file", oid, 3)], "does not make"),                # unknown opcode
        (bytes((delta.OP_FILE,)) + struct.pack(">I", 1 << 30), [("file", oid, 0)], "header"),
        (delta.op_link(hdr), [("file", oid, 7)], "size 0"),
        (bytes((delta.OP_PATCH,)) + struct.pack(">I", len(hdr)) + hdr + oid + struct.pack(">I", 1 << 31),
         [("file", oid, 10)], "control block"),
    ]
    for stream, objs, msg in cases:
        r = _reader(stream, objs)
        with pytest.raises(FormatError, match=msg):
            op = r.next_op()
            if op.code == delta.OP_FILE:
                r.read(op.size)
            r.next_op()


def _rewrite_part(d, sb, index, usize=None, raw=None, stream=None):
    """Replace part ``index`` with ``stream`` (uncompressed ops) or ``raw`` bytes; fix the superblock."""
    parts = []
    for p in sb.parts:
        if p.index == index:
            data = raw if raw is not None else zlib.compress(stream, 9)
            with open(os.path.join(d, str(index)), "wb") as f:
                f.write(data)
            p = delta.Part(p.index, "zlib", len(data), usize if usize is not None else len(stream or b""),
                           hashlib.sha256(data).digest(), p.objects)
        parts.append((p.codec, p.size, p.usize, p.sha256, p.objects))
    data = delta.encode_superblock(sb.from_id, sb.to_id, sb.commit, parts)
    return delta.parse_superblock(data)


def test_tampered_truncated_and_swapped_parts_are_refused_before_parsing(tmp_path, host, monkeypatch):
    host.delta("2", "1", part_size=8192)
    d, data, sb = load(host, "2", "1")
    repo = device_with(tmp_path, host, ["1"])
    parsed = []
    real = delta.PartReader.__init__

    def spy(self, *a):
        parsed.append(1)
        real(self, *a)

    monkeypatch.setattr(delta.PartReader, "__init__", spy)
    path = os.path.join(str(tmp_path), "part")
    p0 = sb.parts[0]
    raw = open(os.path.join(d, "0"), "rb").read()
    for bad, msg in ((raw[:10] + bytes([raw[10] ^ 1]) + raw[11:], "SHA-256"), (raw[:-1], "bytes, the superblock"),
                     (open(os.path.join(d, "1"), "rb").read(), "bytes, the superblock|SHA-256")):
        open(path, "wb").write(bad)
        with pytest.raises(IntegrityError, match=msg):
            deltaapply.apply_part(repo, path, p0)
    assert not parsed
    assert fsck.fsck(repo).as_dict()["ok"]


def test_decompression_bomb_and_wrong_usize(tmp_path, host):
    host.delta("2", "1")
    d, data, sb = load(host, "2", "1")
    repo = device_with(tmp_path, host, ["1"])
    real = zlib.decompress(open(os.path.join(d, "0"), "rb").read())
    # The declared size is smaller than what the stream holds: reading stops at the declared size.
    sb2 = _rewrite_part(d, sb, 0, usize=len(real) - 100, raw=zlib.compress(real, 9))
    with pytest.raises(FormatError):
        deltaapply.apply_part(repo, os.path.join(d, "0"), sb2.parts[0])
    # A bomb: a few KB that inflate to 1 GiB; only the declared bytes are ever produced.
    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    sb3 = _rewrite_part(d, sb, 0, usize=len(real), raw=bomb)
    with pytest.raises(FormatError):
        deltaapply.apply_part(repo, os.path.join(d, "0"), sb3.parts[0])
    # Trailing data after a valid stream.
    sb4 = _rewrite_part(d, sb, 0, usize=len(real), raw=zlib.compress(real, 9) + b"junk")
    with pytest.raises(FormatError, match="more data"):
        deltaapply.apply_part(repo, os.path.join(d, "0"), sb4.parts[0])
    assert fsck.fsck(repo).as_dict()["ok"]
    host.delta("2", "1")  # restore


def test_corrupt_compressed_streams_are_format_errors():
    import io
    import lzma

    raw = bytes(range(256)) * 20
    for codec, data in (("zlib", zlib.compress(raw)), ("xz", lzma.compress(raw))):
        bad = data[:24] + bytes(b ^ 0x5A for b in data[24:60]) + data[60:]
        with pytest.raises(FormatError, match="corrupt %s stream" % codec):
            deltaapply._Inflater(io.BytesIO(bad), codec, "part 0").read(len(raw))


def test_malicious_patch_in_a_part_is_refused(tmp_path, host):
    host.delta("2", "1")
    d, data, sb = load(host, "2", "1")
    repo = device_with(tmp_path, host, ["1"])
    stream = zlib.decompress(open(os.path.join(d, "0"), "rb").read())
    # find the first bsdiff record and give it a negative length
    i = stream.index(bytes((delta.OP_PATCH,)))
    hlen = struct.unpack(">I", stream[i + 1:i + 5])[0]
    ctrl_at = i + 5 + hlen + 32 + 4
    neg = bsdiff4.core.encode_int64(-1000)
    # rebuild the stream so that earlier records stay, the patch record is corrupted
    bad = stream[:ctrl_at] + neg + stream[ctrl_at + 8:]
    sb2 = _rewrite_part(d, sb, 0, stream=bad)
    with pytest.raises(FormatError, match="negative|control"):
        deltaapply.apply_part(repo, os.path.join(d, "0"), sb2.parts[0])
    assert fsck.fsck(repo).as_dict()["ok"]
    host.delta("2", "1")


def test_object_hash_mismatch_and_missing_base(tmp_path, host):
    host.delta("2", "1")
    d, data, sb = load(host, "2", "1")
    # a repository without the base commit's objects cannot use the delta
    empty = Repo.init(str(tmp_path / "empty"), "user")
    with pytest.raises(NotFoundError, match="base"):
        for p in sb.parts:
            deltaapply.apply_part(empty, os.path.join(d, str(p.index)), p)
    # an object list that names other IDs: the produced objects do not match, nothing is stored
    repo = device_with(tmp_path, host, ["1"])
    before = sorted(repo.iter_objects())
    p = sb.parts[0]
    wrong = [(k, hashlib.sha256(oid).digest(), s) for k, oid, s in p.objects]
    sb2 = delta.Part(0, p.codec, p.size, p.usize, p.sha256, wrong)
    with pytest.raises(IntegrityError):
        deltaapply.apply_part(repo, os.path.join(d, "0"), sb2)
    assert sorted(repo.iter_objects()) == before


def test_superblock_for_another_base_is_refused(host):
    host.delta("2", "1")
    d, data, sb = load(host, "2", "1")
    with pytest.raises(IntegrityError, match="expected"):
        deltaapply.read_superblock(data, host.commits["2"], host.commits["2"])
    with pytest.raises(IntegrityError):
        deltaapply.read_superblock(data, None, host.commits["2"])
    forged = delta.encode_superblock(sb.from_id, sb.to_id, sb.commit + b" ", [])
    with pytest.raises(IntegrityError, match="hashes"):
        deltaapply.read_superblock(forged, sb.from_id, sb.to_id)


def test_pure_python_patch_path_applies_the_same(tmp_path, host):
    host.delta("2", "1")
    d, data, sb = load(host, "2", "1")
    repo = device_with(tmp_path, host, ["1"])
    for p in sb.parts:
        deltaapply.apply_part(repo, os.path.join(d, str(p.index)), p, use_c=False)
    tx = repo.transaction()
    tx.add_meta("commit", sb.commit)
    tx.commit()
    checkout_equal(tmp_path, host, repo, "2")


def test_delta_command(tmp_path, host):
    from crashharness import run_cli

    rc, out, err = run_cli(["--repo", host.repo.path, "delta", "--from", "qemu-arm64/stable^", "--to",
                            "qemu-arm64/stable", "--board", BOARD, "--json", "--jobs", "1"])
    assert rc == 0, err
    import json

    doc = json.loads(out)
    assert doc["codec"] == "xz" and doc["from"] == objects.to_hex(host.commits["1"])
    rc, out, err = run_cli(["--repo", host.repo.path, "delta", "--to", "qemu-arm64/stable", "--codec", "zlib"])
    assert rc == 0 and "full-" in out and "zlib" in out
    rc, out, err = run_cli(["--repo", host.repo.path, "delta", "--from", "qemu-arm64/stable", "--to",
                            "qemu-arm64/stable"])
    assert rc == 2 and "same commit" in err
    shutil.rmtree(host.delta_dir("2"))
