"""Writing offline bundles (container format: updater/bundle.py, docs/delta-format.md).

A bundle holds the files a device's pull would fetch for one update, taken from a published
repository: ``summary`` with its signatures, the target commit's signature, and one delta
(superblock and parts). The delta must be listed in the published summary with the superblock
on disk (publish after generating the delta), so the device can verify everything against the
signature alone.
"""


from .. import bundle, delta, fs, objpull, summary
from ..errors import ConfigError, NotFoundError, StorageError
from ..objects import to_hex


def _file(repo, name):
    path = fs.join(repo.path, name)
    st = fs.lstat(path)
    if st is None or not st.is_reg():
        return None
    return path


def plan(repo, to_id, from_id=None):
    """[(name, path)] of the files a bundle for ``from_id`` -> ``to_id`` must hold."""
    summary_path = _file(repo, "summary")
    if summary_path is None:
        raise ConfigError("bundling from %s: the repository is not published (no summary)" % repo.path,
                          "run: updater --repo %s publish --key KEY" % repo.path)
    data = fs.read_bytes(summary_path, summary.MAX_SUMMARY_BYTES, "reading the published summary")
    s = summary.decode_unverified(data, "summary " + summary_path)
    if not any(b.commit == to_id for b in s.branches.values()):
        raise ConfigError("bundling %s: the published summary names no branch at that commit" % to_hex(to_id)[:12],
                          "bundle a branch head, or commit and publish it first")
    entry = s.find_delta(from_id, to_id)
    name = delta.delta_name(from_id, to_id)
    if entry is None:
        raise ConfigError("bundling: the published summary lists no delta %s" % name,
                          "run: updater --repo R delta %s--to %s, then publish"
                          % ("--from %s " % to_hex(from_id)[:12] if from_id else "", to_hex(to_id)[:12]))
    directory = fs.join(repo.path, "deltas", name)
    sb_path = _file(repo, "deltas/%s/superblock" % name)
    if sb_path is None:
        raise NotFoundError("bundling: deltas/%s/superblock is missing" % name, "generate the delta again and publish")
    digest, size = fs.sha256_file(sb_path)
    if digest != entry.superblock_sha256 or size != entry.superblock_size:
        raise ConfigError("bundling: deltas/%s changed since the summary was published" % name,
                          "run updater publish again")
    sb = delta.parse_superblock(fs.read_bytes(sb_path, delta.MAX_SUPERBLOCK_BYTES, "reading superblock"))
    files = [("summary", summary_path)]
    for sig_name in (summary.signature_name(data), "summary.sig"):
        path = _file(repo, sig_name)
        if path is not None:
            files.append((sig_name, path))
    if len(files) == 1:
        raise ConfigError("bundling: the summary has no signature file", "run updater publish again")
    commit_sig_name = objpull.object_name(to_id, "sig")
    commit_sig = _file(repo, commit_sig_name)
    if commit_sig is None:
        raise ConfigError("bundling: commit %s is not signed" % to_hex(to_id)[:12], "run updater publish again")
    files.append((commit_sig_name, commit_sig))
    files.append(("deltas/%s/superblock" % name, sb_path))
    for part in sb.parts:
        path = fs.join(directory, str(part.index))
        st = fs.lstat(path)
        if st is None or st.size != part.size:
            raise NotFoundError("bundling: deltas/%s/%d is missing or has the wrong size" % (name, part.index),
                                "generate the delta again and publish")
        files.append(("deltas/%s/%d" % (name, part.index), path))
    return files


def write(repo, to_id, from_id, out):
    """Write the bundle file ``out`` (atomically); returns a report dict."""
    files = plan(repo, to_id, from_id)
    sizes = [(name, fs.lstat(path).size) for name, path in files]
    header = bundle.encode_index(sizes)
    directory = fs.dirname(fs.abspath(out))
    tmp = fs.temp_name(directory, "bundle")

    def chunks():
        yield header
        for (name, path), (_, size) in zip(files, sizes):
            got = 0
            with fs.open_read(path) as src:
                while True:
                    block = src.read(1 << 20)
                    if not block:
                        break
                    got += len(block)
                    yield block
            if got != size:  # the index would point past it: e.g. a publish ran meanwhile
                raise StorageError("bundling %s: %d bytes read, the bundle's index says %d (it changed while being "
                                   "copied)" % (path, got, size), "run the bundle command again")

    fs.write_stream(tmp, chunks(), sync=True)
    fs.rename(tmp, out)
    fs.fsync_dir(directory)
    total = len(header) + sum(size for _, size in sizes)
    return {"bundle": out, "size": total, "delta": delta.delta_name(from_id, to_id),
            "from": to_hex(from_id) if from_id else None, "to": to_hex(to_id),
            "entries": [name for name, _ in files]}

