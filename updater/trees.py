"""Reading trees by path: walking, looking up, listing and diffing commits (no writes)."""

from .errors import NotFoundError
from .objects import check_name, to_hex


class Entry:
    """One path of a tree: kind "file" (regular or symlink, see header) or "dir"."""

    __slots__ = ("path", "kind", "oid", "header", "size", "meta")

    def __init__(self, path, kind, oid, header=None, size=0, meta=None):
        self.path = path
        self.kind = kind
        self.oid = oid
        self.header = header
        self.size = size
        self.meta = meta


def split_path(path):
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        check_name(part, "path '%s'" % path)
        parts.append(part)
    return parts


MAX_SYMLINKS = 40  # as Linux's path walk


def _target_parts(target):
    return [p for p in target.split("/") if p not in ("", ".")]


def lookup(repo, commit_id, path, follow=False):
    """Entry for ``path`` in a commit; NotFoundError if absent.

    ``follow``: resolve symlinks on the way and at the end as the booted system would, inside the
    commit (absolute targets start at its root; '..' stops at the root), e.g. /sbin/init through
    a merged-/usr /sbin -> usr/sbin. The Entry keeps the path asked for.
    """
    commit = repo.load_commit(commit_id)
    asked = "/" + "/".join(split_path(path))
    where = "looking up %s in commit %s" % (asked, to_hex(commit_id)[:12])
    parts = split_path(path)
    chain = [(commit.tree, commit.meta)]  # directories from the root to the current one
    links = 0
    i = 0
    while i < len(parts):
        part = parts[i]
        i += 1
        if part == "..":  # only from symlink targets
            if len(chain) > 1:
                chain.pop()
            continue
        kind, entry = repo.load_tree(chain[-1][0]).find(part)
        if kind is None:
            raise NotFoundError("%s: no such file or directory" % where)
        if kind == "dir":
            chain.append((entry[1], entry[2]))
            continue
        if follow and repo.header(entry[2]).is_link():
            links += 1
            if links > MAX_SYMLINKS:
                raise NotFoundError("%s: more than %d symlinks (a loop?)" % (where, MAX_SYMLINKS))
            target = repo.header(entry[2]).target
            if target.startswith("/"):
                chain = chain[:1]
            parts = _target_parts(target) + parts[i:]
            i = 0
            continue
        if i != len(parts):
            raise NotFoundError("%s: /%s is not a directory" % (where, part))
        return Entry(asked, "file", entry[1], entry[2], entry[3])
    return Entry(asked, "dir", chain[-1][0], meta=chain[-1][1])


def _entries(repo, tree_id, base):
    tree = repo.load_tree(tree_id)
    items = [Entry(base + "/" + n, "file", oid, header, size) for n, oid, header, size in tree.files]
    items += [Entry(base + "/" + n, "dir", sub, meta=meta) for n, sub, meta in tree.dirs]
    items.sort(key=lambda e: e.path.encode("utf-8"))
    return items


def walk(repo, tree_id, prefix=""):
    """Every Entry below a tree in path order; a directory comes right before its contents."""
    stack = [_entries(repo, tree_id, prefix)]
    index = [0]
    while stack:
        items = stack[-1]
        i = index[-1]
        if i >= len(items):
            stack.pop()
            index.pop()
            continue
        index[-1] = i + 1
        entry = items[i]
        yield entry
        if entry.kind == "dir":
            stack.append(_entries(repo, entry.oid, entry.path))
            index.append(0)


def diff(repo, old_commit, new_commit):
    """(added, removed, modified) path lists between two commits; identical subtrees are skipped."""
    added, removed, modified = [], [], []
    a = repo.load_commit(old_commit)
    b = repo.load_commit(new_commit)
    if a.meta != b.meta:
        modified.append("/")
    _diff_trees(repo, a.tree, b.tree, "", added, removed, modified)
    added.sort()
    removed.sort()
    modified.sort()
    return added, removed, modified


def _all_paths(repo, tree_id, base, out):
    for entry in walk(repo, tree_id, base):
        out.append(entry.path)


def _diff_trees(repo, old_id, new_id, base, added, removed, modified):
    if old_id == new_id:
        return
    old = repo.load_tree(old_id)
    new = repo.load_tree(new_id)
    old_files = {}
    for e in old.files:
        old_files[e[0]] = e
    old_dirs = {}
    for e in old.dirs:
        old_dirs[e[0]] = e
    new_names = {}
    for name, oid, header, size in new.files:
        new_names[name] = True
        path = base + "/" + name
        if name in old_files:
            if old_files[name][1] != oid:
                modified.append(path)
        elif name in old_dirs:
            removed.append(path + "/")
            _all_paths(repo, old_dirs[name][1], path, removed)
            added.append(path)
        else:
            added.append(path)
    for name, sub, meta in new.dirs:
        new_names[name] = True
        path = base + "/" + name
        if name in old_dirs:
            if old_dirs[name][2] != meta:
                modified.append(path + "/")
            _diff_trees(repo, old_dirs[name][1], sub, path, added, removed, modified)
        else:
            if name in old_files:
                removed.append(path)
            added.append(path + "/")
            for entry in walk(repo, sub, path):
                added.append(entry.path + ("/" if entry.kind == "dir" else ""))
    for name in old_files:
        if name not in new_names:
            removed.append(base + "/" + name)
    for name in old_dirs:
        if name not in new_names:
            removed.append(base + "/" + name + "/")
            for entry in walk(repo, old_dirs[name][1], base + "/" + name):
                removed.append(entry.path + ("/" if entry.kind == "dir" else ""))


def reachable(repo, commit_ids, progress=None):
    """Every object reachable from the commits: {oid + kind bytes: (oid, kind, header, size)}."""
    seen = {}
    trees_done = {}
    for cid in commit_ids:
        seen[cid + b"commit"] = (cid, "commit", None, None)
        commit = repo.load_commit(cid)
        seen[commit.meta + b"meta"] = (commit.meta, "meta", None, None)
        stack = [commit.tree]
        while stack:
            tid = stack.pop()
            if tid in trees_done:
                continue
            trees_done[tid] = True
            seen[tid + b"tree"] = (tid, "tree", None, None)
            tree = repo.load_tree(tid)
            for name, oid, header, size in tree.files:
                seen[oid + b"file"] = (oid, "file", header, size)
            for name, sub, meta in tree.dirs:
                seen[meta + b"meta"] = (meta, "meta", None, None)
                stack.append(sub)
            if progress is not None:
                progress(len(seen), None)
    return seen
