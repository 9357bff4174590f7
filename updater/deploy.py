"""Building a deployment and staging it for the next boot.

Order (each step durable before the next; docs/sysroot.md, "Deploying"):

1. clean leftovers of interrupted work (deploy/.tmp-*, repository and sysroot tmp) and
   reconcile the state map with the directories (deployments.reconcile);
2. check the commit: present, intact, for this device's board;
3. walk the new tree (trees parsed once, cached for the checkout): count what the deployment
   needs, check free space beside the reserve, and re-hash the objects to be linked that the
   merge-source deployment does not already use (policy "new"; "all" re-hashes every one) -
   a corrupt object is refused by name before anything is written;
4. check out into deploy/.tmp-NAME (hard links; /etc copied; empty files created; EMLINK and
   cross-device links fall back to copies), then merge /etc three ways from the booted
   deployment (etcmerge);
5. one syncfs for everything written, record NAME as "pending" in the state, rename
   .tmp-NAME to NAME (the deployment appears complete or not at all), fsync the directory;
6. a second syncfs, so the rename is written in place and not only in the ext4 journal
   (U-Boot's ext4 reader does not replay the journal: after a power cut it would not find
   NAME), then stage it: ONE boot-selection write (trial = NAME, count = 0; on an empty
   device current = NAME, after boot/updater-env.txt), then the record becomes "ready".
A crash anywhere leaves either the old selection (the new directory, if any, is removed or
kept unstaged by the next run) or the new one pointing at a complete deployment.
"""

import time

from . import checkout, deployments, etcmerge, fs, objects
from .errors import BootError, IntegrityError, NotFoundError, TrustError, UpdaterError
from .objects import to_hex
from .sysroot import records, set_result

COPY_DIRS = ("etc",)
FALLBACK_FILE = "boot/updater-env.txt"
MAX_CACHED_ENTRIES = 200000


class TreeCache:
    """The repository, with parsed trees kept for a second walk (bounded by entry count)."""

    def __init__(self, repo):
        self._repo = repo
        self._trees = {}
        self._entries = 0
        # bound once: checkout calls these per file
        self.header = repo.header
        self.object_path = repo.object_path
        self.mode = repo.mode

    def load_tree(self, oid):
        tree = self._trees.get(oid)
        if tree is None:
            tree = self._repo.load_tree(oid)
            size = len(tree.files) + len(tree.dirs) + 1
            if self._entries + size <= MAX_CACHED_ENTRIES:
                self._trees[oid] = tree
                self._entries += size
        return tree

    def __getattr__(self, name):
        return getattr(self._repo, name)


class Plan:
    def __init__(self):
        self.files = 0
        self.dirs = 0
        self.copy_bytes = 0
        self.to_verify = []
        self.verify_bytes = 0

    def needed(self):
        """Bytes the deployment itself takes, about: copies, directories, entries."""
        return self.copy_bytes + 4096 * (self.dirs + 1) + 64 * self.files


def plan(repo, commit, base, verify_all):
    """Walk the new commit (and the merge source's commit ``base`` side by side) into a Plan."""
    out = Plan()
    queued = {}  # objects already in to_verify (one re-hash per object, however many paths use it)
    stack = [(commit.tree, base.tree if base is not None else None, "")]
    while stack:
        tid, base_tid, rel = stack.pop()
        tree = repo.load_tree(tid)
        base_tree = repo.load_tree(base_tid) if base_tid is not None and not verify_all else None
        old = {}
        if base_tree is not None:
            for entry in base_tree.files:
                old[entry[0]] = entry[1]
        copying = rel == "etc" or rel.startswith("etc/")
        for name, oid, header, size in tree.files:
            out.files += 1
            if copying:
                out.copy_bytes += size
            if (verify_all or old.get(name) != oid) and oid not in queued:
                queued[oid] = True
                out.to_verify.append((oid, header, size, rel + "/" + name))
                out.verify_bytes += size
        olddirs = {}
        if base_tree is not None:
            for entry in base_tree.dirs:
                olddirs[entry[0]] = entry[1]
        for name, sub, meta in tree.dirs:
            out.dirs += 1
            stack.append((sub, olddirs.get(name), rel + "/" + name if rel else name))
    return out


def verify_objects(repo, plan_, commit_id):
    """Re-hash the planned objects; the first bad one is refused by object and path."""
    for oid, header, size, path in plan_.to_verify:
        try:
            repo.verify_file(oid, header, size)
        except (IntegrityError, NotFoundError) as err:
            raise type(err)("deploying %s: object %s (/%s) is unusable: %s"
                            % (to_hex(commit_id)[:12], to_hex(oid), path, err),
                            "repair the repository: pull again, or run 'updater --sysroot S fsck' to list all damage")
    return len(plan_.to_verify)


def commit_board(commit):
    return commit.board or objects.board_of_branch(commit.branch)


def check_board(config, commit, commit_id):
    board = commit_board(commit)
    if config.board and board and board != config.board:
        raise TrustError("deploying %s: the commit is for board '%s' (branch %s), this device is '%s'"
                         % (to_hex(commit_id)[:12], board, commit.branch, config.board),
                         "deploy a commit of this board's branch, e.g. %s/stable" % config.board)


def check_bootable(sysroot, repo, commit, commit_id):
    """U-Boot devices: refuse a commit that lacks what the boot script and early boot load.

    Staging it would only cost a trial boot (U-Boot and the early boot fall back), but a device
    that keeps being offered such a commit would never move on; say it plainly instead."""
    config = sysroot.config()
    if config.bootloader != "uboot" or not config.board:
        return
    from .trees import lookup

    board = sysroot.board()
    needed = [(board.boot.kernel, "the kernel the boot script loads")]
    if board.boot.initrd:
        needed.append((board.boot.initrd, "the initramfs the boot script loads"))
    if board.boot.fdt:
        needed.append((board.boot.fdt, "the device tree the boot script loads"))
    needed.append(("sbin/init", "what the early boot starts"))
    for path, what in needed:
        try:
            entry = lookup(repo, commit_id, path, follow=True)
        except NotFoundError:
            entry = None
        if entry is None or entry.kind != "file":
            raise BootError("deploying %s: the commit has no /%s (%s on board %s); it could not boot"
                            % (to_hex(commit_id)[:12], path, what, board.name),
                            "build the image with it, or correct [boot] in board-configs/%s.conf" % board.name)


def clean_interrupted(sysroot):
    """Remove leftovers of interrupted work: half-built deployments, repository and sysroot tmp."""
    out = {"deploy_tmp": fs.clean_temps(sysroot.deploy_dir), "sysroot_tmp": fs.clean_temps(sysroot.tmp_dir)}
    out["repo_tmp"] = sysroot.repo().clean_tmp()
    return out


def attempt_limit(sysroot):
    if sysroot.config().bootloader == "uboot":
        return sysroot.board().boot.attempt_limit
    from .bootloader import SCRIPT_DEFAULT_LIMIT

    return SCRIPT_DEFAULT_LIMIT


def write_fallback(sysroot, current):
    """U-Boot devices: SYSROOT/boot/updater-env.txt, which boot.cmd imports when the env is lost.

    Written durably BEFORE every env write that makes ``current`` the known-good deployment: on
    a single-copy env a power cut during that write leaves U-Boot on its defaults, and this file
    is then what boots the device (the new known-good deployment, already proven or first).
    "Durably" includes a syncfs: U-Boot's ext4 reader does not replay the journal, so a file
    that is only fsync'd (its rename committed to the journal, not yet written in place) is
    read in its OLD version by U-Boot after a power cut (seen under QEMU, tests/qemu)."""
    if sysroot.config().bootloader != "uboot" or not current:
        return
    from .ubootenv import format_text

    board = sysroot.board()
    names = board.boot.vars
    lines = {names["current"]: current, names["limit"]: str(board.boot.attempt_limit)}
    settings = board.boot.settings()
    for key in settings:
        if settings[key]:
            lines[names[key]] = settings[key]
    path = fs.join(sysroot.path, FALLBACK_FILE)
    fs.makedirs(fs.dirname(path))
    fs.write_atomic(path, format_text(lines).encode())
    fs.sync_fs(path)  # in place for U-Boot, which reads ext4 without replaying the journal


def read_fallback(sysroot):
    """The deployment named by the fallback file (U-Boot devices), or None."""
    path = fs.join(sysroot.path, FALLBACK_FILE)
    if sysroot.config().bootloader != "uboot" or fs.lstat(path) is None:
        return None
    key = sysroot.board().boot.vars["current"] + "="  # the name write_fallback wrote it under
    for line in fs.read_bytes(path, 16384, "reading the boot fallback").decode("utf-8", "replace").split("\n"):
        if line.startswith(key):
            return line[len(key):].strip() or None
    return None


def merge_source(sysroot, contract, booted):
    """The deployment whose /etc is carried over: the booted one, else the current one."""
    for name in (booted, contract.get("current")):
        if name and fs.is_dir(sysroot.deployment_path(name)):
            return name
    return None


def deploy(sysroot, commit_id, progress=None, verify=None, booted=None, say=None, stage=True):
    """Build a deployment of ``commit_id`` and stage it; the caller holds the sysroot lock."""
    say = say or (lambda text: None)
    repo = sysroot.repo()
    config = sysroot.config()
    hexid = to_hex(commit_id)
    bl = sysroot.bootloader()
    contract = bl.read()
    deployments.check_contract(contract, "deploying %s" % hexid[:12])
    state = sysroot.load_state()
    cleaned = clean_interrupted(sysroot)
    if deployments.changed(deployments.reconcile(sysroot, state, contract)):
        sysroot.save_state(state)
    recs = records(state)
    commit = repo.load_commit(commit_id)
    check_board(config, commit, commit_id)
    check_bootable(sysroot, repo, commit, commit_id)
    source = merge_source(sysroot, contract, booted)
    base_id = deployments.commit_id(source) if source is not None else None
    base = repo.load_commit(base_id) if base_id is not None and repo.has(base_id, "commit") else None
    cache = TreeCache(repo)
    policy = verify or config.verify
    the_plan = plan(cache, commit, base, policy == "all")
    sysroot.check_space(the_plan.needed(), "deploying %s" % hexid[:12])
    say("verifying %d objects (%d bytes) before linking them" % (len(the_plan.to_verify), the_plan.verify_bytes))
    verified = verify_objects(repo, the_plan, commit_id)
    taken = deployments.on_disk(sysroot) + sorted(recs) + deployments.contract_names(contract)
    name = deployments.next_name(hexid, taken)
    tmp = fs.join(sysroot.deploy_dir, fs.TMP_PREFIX + name)
    say("checking out %s into %s" % (hexid[:12], sysroot.deployment_path(name)))
    checkout.prepare_dest(tmp)
    try:
        stats = checkout.checkout_tree(cache, commit.tree, commit.meta, tmp, COPY_DIRS, progress, the_plan.files)
    except UpdaterError as err:
        raise type(err)("deploying %s: checking out into %s: %s" % (hexid[:12], tmp, err), err.hint)
    merged = None
    if source is not None and base is not None:
        say("merging /etc from deployment %s" % source)
        merged = _merge_etc(cache, base, commit, sysroot.deployment_path(source), tmp).as_dict()
    fs.sync_fs(sysroot.deploy_dir)
    state["seq"] = (state.get("seq") or 0) + 1
    rec = {"commit": hexid, "version": commit.version, "branch": commit.branch, "subject": commit.subject,
           "timestamp": commit.timestamp, "seq": state["seq"], "created": int(time.time()),
           "merged_from": source or "", "state": deployments.PENDING}
    if merged is not None:
        rec["etc_conflicts"] = merged["conflicts"]
        rec["etc_kept"] = merged["kept_count"]
    recs[name] = rec
    sysroot.save_state(state)
    fs.rename(tmp, sysroot.deployment_path(name))
    fs.fsync_dir(sysroot.deploy_dir)
    first = not contract.get("current")
    if stage:
        # U-Boot reads ext4 without replaying its journal: after a power cut it sees only what
        # was written in place, and an fsync'd rename may still live in the journal alone.
        fs.sync_fs(sysroot.deploy_dir)
        limit = attempt_limit(sysroot)
        if first:
            write_fallback(sysroot, name)  # before the env write: it boots the device if that write is torn
            bl.write({"current": name, "trial": "", "count": 0, "limit": limit, "failed": ""})
        else:
            bl.write({"trial": name, "count": 0, "limit": limit})
    rec["state"] = deployments.READY
    if first and stage:
        deployments.mark_good(state, name)
    set_result(state, "deploy", True, "deployed %s (version %s)%s" % (name, commit.version or "-",
               "" if not stage else (" as the boot default" if first else " for a trial boot")))
    sysroot.save_state(state)
    return {"deployment": name, "commit": hexid, "version": commit.version, "branch": commit.branch,
            "subject": commit.subject, "staged": bool(stage and not first), "current": bool(stage and first),
            "merged_from": source, "etc": merged, "checkout": stats.as_dict(), "verified_objects": verified,
            "verified_bytes": the_plan.verify_bytes, "verify_policy": policy, "cleaned": cleaned}


def _merge_etc(repo, base, commit, source_path, dest_root):
    old_etc = _etc_entry(repo, base)
    new_etc = _etc_entry(repo, commit)
    dest = dest_root + "/etc"
    if new_etc is None and fs.lstat(dest) is None:
        fs.mkdir(dest, 0o755)
    return etcmerge.merge(repo, old_etc, source_path + "/etc", new_etc, dest)


def _etc_entry(repo, commit):
    tree = repo.load_tree(commit.tree)
    for name, sub, meta in tree.dirs:
        if name == "etc":
            return (sub, meta)
    return None


def commit_of(name):
    parsed = deployments.parse_name(name or "")
    return parsed[0] if parsed else None


def is_up_to_date(sysroot, commit_id, contract, booted):
    """'booted' or 'staged' if ``commit_id`` already runs or waits for its trial boot, else None."""
    hexid = to_hex(commit_id)
    if booted and not fs.is_dir(sysroot.deployment_path(booted)):
        booted = None  # a stale name (e.g. a test's command line): trust only what is on disk
    if booted and commit_of(booted) == hexid and not contract.get("trial"):
        return "booted"
    if contract.get("trial") and commit_of(contract.get("trial")) == hexid:
        return "staged"
    if not booted and not contract.get("trial") and commit_of(contract.get("current")) == hexid:
        return "booted"
    return None

