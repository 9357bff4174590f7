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


def lookup(repo, commit_id, path):
    """Entry for ``path`` in a commit; NotFoundError if absent."""
    commit = repo.load_commit(commit_id)
    parts = split_path(path)
    tree_id, meta_id = commit.tree, commit.meta
    for i, part in enumerate(parts):
        tree = repo.load_tree(tree_id)
        kind, entry = tree.find(part)
        shown = "/" + "/".join(parts[: i + 1])
        if kind is None:
            raise NotFoundError("looking up %s in commit %s: no such file or directory" % (shown, to_hex(commit_id)[:12]))
        if kind == "file":
            if i != len(parts) - 1:
                raise NotFoundError("looking up /%s in commit %s: %s is not a directory"
                                    % ("/".join(parts), to_hex(commit_id)[:12], shown))
            return Entry(shown, "file", entry[1], entry[2], entry[3])
        tree_id, meta_id = entry[1], entry[2]
    return Entry("/" + "/".join(parts), "dir", tree_id, meta=meta_id)


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
