"""bmap files (updater.host.bmap) against Debian's bmap-tools: bmaptool copy must accept ours,
check our checksums, and reproduce the image; zero blocks are left out unless kept."""

import hashlib
import os
import shutil
import subprocess

import pytest

from provkit import flash_over
from updater.errors import FormatError
from updater.host import bmap

pytestmark = pytest.mark.skipif(shutil.which("bmaptool") is None, reason="bmaptool is not installed (run .ci/setup)")
B = 4096


def make_image(path, size, writes):
    """A sparse file of ``size`` bytes with ``writes`` [(offset, bytes)] (zeros written stay data)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in writes:
            f.seek(off)
            f.write(data)
    return path


def bmaptool_copy(image, dest, bmap_path=None):
    cmd = ["bmaptool", "-q", "copy"] + (["--bmap", bmap_path] if bmap_path else []) + [image, dest]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_ranges_are_the_data_extents_and_bmaptool_reproduces(tmp_path):
    img = make_image(str(tmp_path / "a.img"), 100 * B + 1000, [
        (0, b"A" * 10),                 # block 0
        (B, bytes(3 * B)),              # blocks 1-3 written as zeros: data, mapped
        (8 * B + 5, b"B" * (2 * B)),    # blocks 8-10
        (50 * B, b"C"),                 # block 50
        (100 * B + 10, b"D" * 100),     # the partial last block (100)
    ])
    res = bmap.write_bmap(img, img + ".bmap")
    assert [(a, b) for a, b, _ in res["ranges"]] == [(0, 3), (8, 10), (50, 50), (100, 100)]
    assert res["mapped_blocks"] == 9 and res["mapped_bytes"] == 8 * B + 1000
    assert res["sha256"] == digest(img)
    with open(img, "rb") as f:
        data = f.read()
    assert res["ranges"][1][2] == hashlib.sha256(data[8 * B:11 * B]).hexdigest()
    assert res["ranges"][3][2] == hashlib.sha256(data[100 * B:]).hexdigest()
    # the same blocks bmaptool itself maps
    ours = bmap.parse_bmap(open(img + ".bmap", "rb").read())
    theirs = subprocess.run(["bmaptool", "-q", "create", img], stdout=subprocess.PIPE).stdout
    assert [r[:2] for r in ours["ranges"]] == [r[:2] for r in bmap.parse_bmap(theirs)["ranges"]]
    dest = str(tmp_path / "copy.img")
    r = bmaptool_copy(img, dest)
    assert r.returncode == 0, r.stderr.decode()
    assert digest(dest) == digest(img)


def test_the_file_follows_bmaptools_format_2_0(tmp_path):
    img = make_image(str(tmp_path / "f.img"), 8 * B, [(2 * B, b"x")])
    text = bmap.format_bmap(8 * B, B, [(2, 2, "ab" * 32)])
    parsed = bmap.parse_bmap(text)
    assert parsed == {"version": "2.0", "image_size": 8 * B, "block_size": B, "blocks": 8, "mapped_blocks": 1,
                      "ranges": [(2, 2, "ab" * 32)]}
    assert b"<Range chksum=\"%s\"> 2 </Range>" % (b"ab" * 32) in text
    body = text.replace(parsed and text.split(b"<BmapFileChecksum> ")[1][:64], b"0" * 64)
    assert hashlib.sha256(body).hexdigest().encode() in text
    assert os.path.getsize(img) == 8 * B


def test_bmaptool_checks_our_range_checksums(tmp_path):
    img = make_image(str(tmp_path / "t.img"), 16 * B, [(0, b"good data"), (8 * B, b"more")])
    res = bmap.scan(img)
    ranges = list(res["ranges"])
    ranges[1] = (ranges[1][0], ranges[1][1], "00" * 32)  # a wrong checksum, but a consistent file
    path = str(tmp_path / "bad.bmap")
    with open(path, "wb") as f:
        f.write(bmap.format_bmap(res["image_size"], B, ranges))
    r = bmaptool_copy(img, str(tmp_path / "out.img"), path)
    assert r.returncode != 0 and b"checksum mismatch" in r.stderr


def test_a_tampered_bmap_file_is_refused(tmp_path):
    img = make_image(str(tmp_path / "t.img"), 16 * B, [(0, b"data")])
    bmap.write_bmap(img, img + ".bmap")
    with open(img + ".bmap", "rb") as f:
        text = f.read()
    bad = text.replace(b"<MappedBlocksCount> 1 </MappedBlocksCount>", b"<MappedBlocksCount> 2 </MappedBlocksCount>")
    assert bad != text
    with pytest.raises(FormatError, match="BmapFileChecksum"):
        bmap.parse_bmap(bad)
    with open(img + ".bmap", "wb") as f:
        f.write(bad)
    r = bmaptool_copy(img, str(tmp_path / "out.img"))
    assert r.returncode != 0 and b"checksum mismatch for bmap file" in r.stderr


def test_kept_ranges_are_mapped_even_when_zero(tmp_path):
    """A hole that must overwrite old data on the medium is mapped when kept."""
    img = make_image(str(tmp_path / "k.img"), 64 * B, [(0, b"table"), (40 * B, b"env")])
    res = bmap.scan(img, keep=[(32 * B, 16 * B), (63 * B + 10, 1)])
    assert [(a, b) for a, b, _ in res["ranges"]] == [(0, 0), (32, 47), (63, 63)]
    bmap.write_bmap(img, img + ".bmap", keep=[(32 * B, 16 * B)])
    dest = str(tmp_path / "old.img")
    with open(dest, "wb") as f:
        f.write(b"\xee" * 64 * B)
    flash_over(img, dest)
    with open(dest, "rb") as f:
        old = f.read()
    assert old[32 * B:48 * B] == open(img, "rb").read()[32 * B:48 * B]  # zeros and "env" written
    assert old[B:2 * B] == b"\xee" * B  # an unmapped block keeps what the medium held


def test_an_empty_image_maps_nothing(tmp_path):
    img = make_image(str(tmp_path / "e.img"), 32 * B, [])
    res = bmap.write_bmap(img, img + ".bmap")
    assert res["ranges"] == [] and res["mapped_bytes"] == 0 and res["sha256"] == digest(img)
    dest = str(tmp_path / "o.img")
    assert bmaptool_copy(img, dest).returncode == 0 and digest(dest) == digest(img)
