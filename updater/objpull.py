"""Fetching single objects of a commit (the pull's fallback when there is no usable delta).

Server layout: the repository itself (``objects/XX/YYYY.KIND``, docs/repository-format.md).
Trust flows down from the commit ID named by the signed summary: the commit's bytes must hash
to it, each tree and dirmeta to the ID its parent names, and each regular file's header plus
content to the ID its tree entry names; the file's size in that (verified) entry bounds its
download. Symlinks need no fetch: their tree entry's header holds the target, and it must hash
to the entry's ID. Trees and dirmetas are stored as they arrive, files in batches; nothing is
reachable until the pull writes the commit and moves the ref.
"""

from . import objects
from .errors import IntegrityError
from .objects import MAX_COMMIT_BYTES, MAX_META_BYTES, MAX_TREE_BYTES, to_hex

_LIMITS = {"tree": MAX_TREE_BYTES, "meta": MAX_META_BYTES, "commit": MAX_COMMIT_BYTES}
BATCH_BYTES = 32 * 1024 * 1024
BATCH_OBJECTS = 256


def object_name(oid, kind):
    h = to_hex(oid)
    return "objects/%s/%s.%s" % (h[:2], h[2:], kind)


def fetch_meta(fetcher, oid, kind):
    """The verified bytes of a tree, dirmeta or commit object."""
    data = fetcher.fetch_bytes(object_name(oid, kind), _LIMITS[kind])
    got = objects.sha256(data)
    if got != oid:
        raise IntegrityError("fetching %s object %s: its bytes hash to %s" % (kind, to_hex(oid), to_hex(got)),
                             "the server holds corrupt or substituted objects")
    return data


def fetch_commit(fetcher, cid):
    return fetch_meta(fetcher, cid, "commit")


def scan(repo, commit, fetcher=None, tx=None):
    """Walk a commit's trees: (missing files {oid: (header, size)}, missing symlinks {oid: header},
    count of missing trees/dirmetas). With ``fetcher``, missing trees and dirmetas are fetched,
    verified and staged in ``tx`` (and walked)."""
    files = {}
    links = {}
    missing_meta = 0
    done = {}
    stack = [(commit.tree, commit.meta)]
    while stack:
        tid, mid = stack.pop()
        if mid + b"meta" not in done:
            done[mid + b"meta"] = True
            if not repo.has(mid, "meta"):
                if fetcher is None:
                    missing_meta += 1
                else:
                    data = fetch_meta(fetcher, mid, "meta")
                    objects.parse_dirmeta(data, "dirmeta " + to_hex(mid))
                    tx.add_meta("meta", data)
        if tid + b"tree" in done:
            continue
        done[tid + b"tree"] = True
        if repo.has(tid, "tree"):
            tree = repo.load_tree(tid)
        elif fetcher is None:
            missing_meta += 1
            continue
        else:
            data = fetch_meta(fetcher, tid, "tree")
            tree = objects.parse_tree(data, "tree " + to_hex(tid))
            tx.add_meta("tree", data)
        for _, oid, header, size in tree.files:
            if repo.has(oid, "file"):
                continue
            if repo.header(header).is_link():
                links[oid] = header
            else:
                files[oid] = (header, size)
        for _, sub, meta in tree.dirs:
            stack.append((sub, meta))
    return files, links, missing_meta


def count_missing(repo, commit):
    """How many objects of ``commit`` the repository lacks (a missing tree counts once)."""
    files, links, metas = scan(repo, commit)
    return len(files) + len(links) + metas


def fetch_missing(repo, fetcher, commit, progress, check_space):
    """Fetch every object of ``commit`` the repository lacks; returns how many were stored.

    ``progress``: has ``add_total(n)`` and ``counted(chunks)``; ``check_space(n)`` raises
    SpaceError if ``n`` more bytes do not fit.
    """
    tx = repo.transaction()
    stored = 0
    try:
        files, links, _ = scan(repo, commit, fetcher, tx)
        for oid in links:
            header = links[oid]
            if objects.symlink_id(header) != oid:
                raise IntegrityError("storing symlink %s: its header hashes to %s"
                                     % (to_hex(oid), to_hex(objects.symlink_id(header))))
            tx.add_symlink(header)
        stored += tx.commit()
        total = 0
        for oid in files:
            total += files[oid][1]
        check_space(total)
        progress.add_total(total)
        tx = repo.transaction()
        batch = 0
        for oid in sorted(files):
            header, size = files[oid]
            chunks = progress.counted(fetcher.stream(object_name(oid, "file"), size))
            tx.add_file_chunks(header, chunks, expect=oid)
            batch += size
            if batch >= BATCH_BYTES or len(tx.staged) >= BATCH_OBJECTS:
                stored += tx.commit()
                tx = repo.transaction()
                batch = 0
        stored += tx.commit()
    except BaseException:
        tx.abort()
        raise
    return stored
