"""Block maps (bmap files) for disk images, in the XML format of bmaptool (bmap-tools), version 2.0.

A bmap lists the blocks of an image that hold data ("mapped"); ``bmaptool copy IMAGE DEST`` writes
only those, checks each range's SHA-256 on the way, and leaves the rest of DEST as it was (on a
regular file: holes, i.e. zeros). Field table (docs/provisioning.md, "The bmap file"):

    <bmap version="2.0">
      <ImageSize> BYTES </ImageSize>            the image file's size
      <BlockSize> 4096 </BlockSize>              bytes per block
      <BlocksCount> N </BlocksCount>             ceil(ImageSize / BlockSize)
      <MappedBlocksCount> M </MappedBlocksCount> blocks inside the ranges below
      <ChecksumType> sha256 </ChecksumType>
      <BmapFileChecksum> HEX </BmapFileChecksum> SHA-256 of this file with HEX replaced by 64 '0'
      <BlockMap>
        <Range chksum="HEX"> FIRST-LAST </Range> inclusive block numbers (or "N" for one block);
      </BlockMap>                                chksum = SHA-256 of those blocks' bytes
    </bmap>

What counts as mapped: every block of the image file's data extents (SEEK_DATA/SEEK_HOLE: what
was written, zeros included, as ``bmaptool create`` maps it), plus any ``keep`` byte ranges the
caller names. Holes are never read. A block left out is "don't care" for the flashing tool: it
keeps whatever the medium held, so an image builder must write (not skip, not punch) every block
whose contents matter even when they are zero -- mke2fs does so for every metadata block it
relies on; the unused inode tables of an ext4 made with lazy_itable_init stay holes, which the
kernel zeroes on first mount. Zero blocks are deliberately NOT dropped: an ext4's resize-inode
blocks, a GPT entry array or a FAT table hold zeros that must overwrite old data.

``write_bmap(image, bmap_path)`` scans the image once, computing the range checksums and the
SHA-256 of the whole image (holes hashed as zeros) in the same pass.
"""

import errno
import hashlib
import os

from .. import fs
from ..errors import FormatError, StorageError

BMAP_FORMAT = "2.0"
BLOCK_SIZE = 4096
_READ = 1 << 20
_ZERO = bytes(_READ)
_PLACEHOLDER = "0" * 64


def _data_extents(fd, size):
    """(start, end) byte extents holding data, by SEEK_DATA/SEEK_HOLE (whole file if unsupported)."""
    out = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            out.append((start, end))
            pos = end
    except (OSError, AttributeError):
        return [(0, size)]
    return out


def _merge(ranges):
    out = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1][1] = last
        else:
            out.append([first, last])
    return [(a, b) for a, b in out]


def scan(path, block_size=BLOCK_SIZE, keep=(), progress=None):
    """Mapped block ranges of the image ``path`` and its SHA-256.

    Returns {"image_size", "block_size", "ranges": [(first, last, sha256 hex)], "mapped_blocks",
    "sha256"}. ``keep``: (offset, length) byte ranges always mapped. ``progress(done, total)``.
    """
    if block_size <= 0 or block_size % 512:
        raise FormatError("bmap of %s: block size %r is not a positive multiple of 512" % (path, block_size))
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise StorageError("making the bmap of %s: cannot open it: %s" % (path, err.strerror))
    try:
        size = os.fstat(fd).st_size
        # 1. the blocks holding data (written, even if zeros), plus the kept ranges
        blocks = []
        for start, end in _data_extents(fd, size):
            blocks.append((start // block_size, (end - 1) // block_size))
        for offset, length in keep:
            end = min(offset + length, size)
            if length > 0 and offset < end:
                blocks.append((offset // block_size, (end - 1) // block_size))
        ranges = [r for r in _merge(blocks) if r[1] >= r[0]]
        # 2. one pass over the whole image: range checksums and the image hash (holes as zeros)
        total = hashlib.sha256()
        out = []
        mapped = 0
        done = 0
        pos = 0
        for first, last in ranges:
            _hash_zeros(total, first * block_size - pos)
            h = hashlib.sha256()
            start, end = first * block_size, min((last + 1) * block_size, size)
            p = start
            while p < end:
                data = os.pread(fd, min(_READ, end - p), p)
                if not data:
                    raise StorageError("making the bmap of %s: short read at %d" % (path, p))
                h.update(data)
                total.update(data)
                p += len(data)
                done += len(data)
                if progress is not None:
                    progress(done, None)
            out.append((first, last, h.hexdigest()))
            mapped += last - first + 1
            pos = end
        _hash_zeros(total, size - pos)
    finally:
        os.close(fd)
    return {"image_size": size, "block_size": block_size, "ranges": out, "mapped_blocks": mapped,
            "sha256": total.hexdigest()}


def _hash_zeros(h, n):
    while n > 0:
        k = min(n, _READ)
        h.update(_ZERO[:k])
        n -= k


def format_bmap(image_size, block_size, ranges, mapped_blocks=None):
    """The bmap file's bytes (BmapFileChecksum filled in) for ranges [(first, last, sha256 hex)]."""
    count = -(-image_size // block_size)
    if mapped_blocks is None:
        mapped_blocks = sum(last - first + 1 for first, last, _ in ranges)
    lines = ['<?xml version="1.0" ?>',
             "<!-- Block map of a disk image (updater provision): copy it with",
             "     'bmaptool copy IMAGE DEST', which writes only the mapped blocks. -->",
             '<bmap version="%s">' % BMAP_FORMAT,
             "    <ImageSize> %d </ImageSize>" % image_size,
             "    <BlockSize> %d </BlockSize>" % block_size,
             "    <BlocksCount> %d </BlocksCount>" % count,
             "    <MappedBlocksCount> %d </MappedBlocksCount>" % mapped_blocks,
             "    <ChecksumType> sha256 </ChecksumType>",
             "    <BmapFileChecksum> %s </BmapFileChecksum>" % _PLACEHOLDER,
             "    <BlockMap>"]
    for first, last, digest in ranges:
        if first < 0 or last < first or last >= count:
            raise FormatError("bmap: range %d-%d is outside the image's %d blocks" % (first, last, count))
        span = "%d" % first if first == last else "%d-%d" % (first, last)
        lines.append('        <Range chksum="%s"> %s </Range>' % (digest, span))
    lines += ["    </BlockMap>", "</bmap>", ""]
    text = "\n".join(lines).encode()
    digest = hashlib.sha256(text).hexdigest()
    return text.replace(_PLACEHOLDER.encode(), digest.encode(), 1)


def write_bmap(image, bmap_path, block_size=BLOCK_SIZE, keep=(), progress=None):
    """Scan ``image`` and write its bmap to ``bmap_path``; returns the scan (see ``scan``) plus
    "mapped_bytes" and "bmap"."""
    result = scan(image, block_size, keep, progress)
    data = format_bmap(result["image_size"], block_size, result["ranges"], result["mapped_blocks"])
    fs.write_atomic(bmap_path, data)
    mapped_bytes = 0
    for first, last, _ in result["ranges"]:
        mapped_bytes += min((last + 1) * block_size, result["image_size"]) - first * block_size
    result["mapped_bytes"] = mapped_bytes
    result["bmap"] = bmap_path
    return result


def parse_bmap(data, what="bmap file"):
    """{"image_size", "block_size", "blocks", "mapped_blocks", "ranges": [(first, last, hex)]} from
    bmap bytes, with the file checksum checked (for tests and for checking a written file)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
        get = lambda tag: int(root.find(tag).text.strip())  # noqa: E731
        out = {"version": root.get("version"), "image_size": get("ImageSize"), "block_size": get("BlockSize"),
               "blocks": get("BlocksCount"), "mapped_blocks": get("MappedBlocksCount"), "ranges": []}
        stored = root.find("BmapFileChecksum").text.strip()
        for r in root.find("BlockMap"):
            span = r.text.strip().split("-")
            first = int(span[0])
            out["ranges"].append((first, int(span[-1]), r.get("chksum")))
    except (ET.ParseError, AttributeError, ValueError) as err:
        raise FormatError("reading %s: not a bmap: %s" % (what, err))
    if hashlib.sha256(data.replace(stored.encode(), _PLACEHOLDER.encode(), 1)).hexdigest() != stored:
        raise FormatError("reading %s: its BmapFileChecksum does not match its contents" % what)
    return out
