"""Deployments on a sysroot: names, records, the rollback and prune policies, removal, status.

A deployment is SYSROOT/updater/deploy/NAME, NAME = COMMITHEX.SERIAL (64 hex digits, a dot, a
decimal serial counting deployments of the same commit from 0). Its record in the state map
("deployments" in docs/sysroot.md) holds what the directory cannot: the sequence number giving
the order of deployments, when it was built, from which deployment its /etc was merged, the
merge conflicts, and when it was last confirmed good or found failed.

The policies (``rollback_target``, ``prune_plan``) are pure functions of names, records and the
boot contract; ``reconcile`` brings records and directories back in line after an interruption.
"""

import time

from . import fs, objects
from .errors import EnvError
from .sysroot import records

PENDING = "pending"
READY = "ready"


def make_name(commit_hex, serial):
    return "%s.%d" % (commit_hex, serial)


def parse_name(name):
    """(commit hex, serial) of a deployment NAME, or None if it is not one."""
    dot = name.find(".")
    if dot != 2 * objects.ID_LEN or not objects.is_hex(name[:dot], 2 * objects.ID_LEN):
        return None
    serial = name[dot + 1:]
    if not serial.isdigit() or len(serial) > 9:
        return None
    return name[:dot], int(serial)


def commit_id(name):
    """The commit ID (bytes) a deployment NAME (one parse_name accepts) was built from."""
    return objects.from_hex(parse_name(name)[0], "deployment %s" % name)


def next_name(commit_hex, taken):
    """The first unused NAME for a commit, above every serial in ``taken`` (names)."""
    serial = 0
    for name in taken:
        parsed = parse_name(name) if name else None
        if parsed is not None and parsed[0] == commit_hex and parsed[1] >= serial:
            serial = parsed[1] + 1
    return make_name(commit_hex, serial)


def on_disk(sysroot):
    """Names of the deployments present (complete: half-built ones are .tmp-* and not listed)."""
    if not fs.is_dir(sysroot.deploy_dir):
        return []
    out = []
    for name in fs.listdir(sysroot.deploy_dir):
        if parse_name(name) is not None and fs.is_dir(fs.join(sysroot.deploy_dir, name)):
            out.append(name)
    return out


def _seq(recs, name):
    rec = recs.get(name)
    seq = rec.get("seq", 0) if isinstance(rec, dict) else 0
    return seq if isinstance(seq, int) else 0


def newest_first(names, recs):
    """Names ordered newest first by sequence number (then name, for a stable order)."""
    return sorted(names, key=lambda n: (-_seq(recs, n), n))  # one key: sort stability not assumed


def contract_names(contract):
    return [contract.get(k) for k in ("current", "trial", "failed") if contract.get(k)]


def rollback_target(names, recs, contract, booted):
    """The deployment ``rollback`` would stage when no trial is pending, or None.

    The newest deployment other than the current one, the staged one and the booted one,
    preferring those last confirmed good (by sequence of confirmation), never one found failed.
    """
    skip = {}
    for n in (contract.get("current"), contract.get("trial"), booted):
        if n:
            skip[n] = True
    good = []
    other = []
    for name in newest_first(names, recs):
        rec = recs.get(name) or {}
        if name in skip or rec.get("failed") or rec.get("state") == PENDING:
            continue
        if rec.get("good"):
            good.append((rec.get("good_seq", 0), name))
        else:
            other.append(name)
    if good:
        good.sort(key=lambda item: (-item[0], item[1]))
        return good[0][1]
    return other[0] if other else None


def prune_plan(names, recs, contract, booted, keep, protect=()):
    """(names to remove, names kept): at most ``keep`` deployments stay, and always the booted,
    current, staged and rollback-target ones and those in ``protect``, even beyond ``keep``."""
    must = {}
    for n in [booted, contract.get("current"), contract.get("trial"),
              rollback_target(names, recs, contract, booted)] + list(protect):
        if n and n in names:
            must[n] = True
    kept = [n for n in newest_first(names, recs) if n in must]
    for name in newest_first(names, recs):
        if name not in must and len(kept) < keep:
            kept.append(name)
    remove = [n for n in newest_first(names, recs) if n not in kept]
    return remove, newest_first(kept, recs)


def remove(sysroot, name):
    """Delete a deployment crash-safely: rename it to .tmp-* (gone at once), then empty it."""
    path = sysroot.deployment_path(name)
    if fs.lstat(path) is None:
        return
    doomed = fs.temp_name(sysroot.deploy_dir, "del")
    fs.rename(path, doomed)
    fs.fsync_dir(sysroot.deploy_dir)
    fs.remove_tree(doomed)


def reconcile(sysroot, state, contract):
    """Bring records and directories in line after an interruption; returns what changed.

    - a record whose directory is missing is dropped (an error event if the contract names it);
    - a ``pending`` record (deploy was interrupted after building) is made ``ready`` if the
      contract names it (it was staged), else its directory is removed and the record dropped;
    - a directory without a record (state lost or restored) is adopted with a minimal record.
    """
    recs = records(state)
    names = on_disk(sysroot)
    present = {}
    for n in names:
        present[n] = True
    named = contract_names(contract)
    out = {"dropped": [], "removed": [], "adopted": [], "missing": [], "finished": []}
    for name in sorted(recs):
        rec = recs[name]
        if name not in present:
            del recs[name]
            out["dropped"].append(name)
            if name in (contract.get("current"), contract.get("trial")):
                out["missing"].append(name)
            continue
        if isinstance(rec, dict) and rec.get("state") == PENDING:
            if name in named:
                rec["state"] = READY
                out["finished"].append(name)
            else:
                remove(sysroot, name)
                del recs[name]
                out["removed"].append(name)
    for name in names:
        if name not in recs and name not in out["removed"]:
            recs[name] = {"commit": parse_name(name)[0], "seq": 0, "created": 0, "state": READY,
                          "adopted": True}
            out["adopted"].append(name)
    return out


def changed(summary):
    for key in summary:
        if summary[key]:
            return True
    return False


def disk_use(path):
    """(files, bytes, private bytes) of a deployment; private = regular files with one link
    (copies: /etc, empty files, EMLINK fallbacks), the space it alone holds besides directories."""
    files = 0
    total = 0
    private = 0
    stack = [path]
    while stack:
        directory = stack.pop()
        for name in fs.listdir(directory):
            p = directory + "/" + name
            st = fs.lstat(p)
            if st is None:
                continue
            if st.is_dir():
                stack.append(p)
            elif st.is_reg():
                files += 1
                total += st.size
                if st.nlink <= 1:
                    private += st.size
    return files, total, private


def mark_good(state, name):
    """Record that ``name`` was confirmed good (the newest confirmation wins rollback)."""
    recs = records(state)
    rec = recs.get(name)
    if not isinstance(rec, dict):
        parsed = parse_name(name)
        rec = {"commit": parsed[0] if parsed else "", "seq": 0, "created": 0, "state": READY, "adopted": True}
        recs[name] = rec
    seq = state.get("good_seq", 0)
    seq = (seq if isinstance(seq, int) else 0) + 1
    state["good_seq"] = seq
    rec["good"] = int(time.time())
    rec["good_seq"] = seq
    rec.pop("failed", None)


def mark_failed(state, name, why):
    rec = records(state).get(name)
    if isinstance(rec, dict):
        rec["failed"] = int(time.time())
        rec["failed_why"] = why


def check_contract(contract, doing):
    if not contract.get("env_ok", True):
        raise EnvError("%s: the boot selection cannot be used: %s" % (doing, contract.get("problem")),
                        "repair it first ('updater env print' shows the problem)")


def status(sysroot, booted, disk=True):
    """The state of the device as one dict (``updater status --json``)."""
    config = sysroot.config()
    contract = sysroot.bootloader().read()
    state = sysroot.load_state()
    recs = records(state)
    names = on_disk(sysroot)
    current, trial = contract.get("current") or None, contract.get("trial") or None
    target = None if trial else rollback_target(names, recs, contract, booted)
    rows = []
    for name in newest_first(list(set(names) | set(recs)), recs):
        rec = recs.get(name) or {}
        row = {"name": name, "commit": rec.get("commit") or (parse_name(name) or ("",))[0],
               "version": rec.get("version", ""), "branch": rec.get("branch", ""),
               "subject": rec.get("subject", ""), "created": rec.get("created", 0),
               "booted": name == booted, "current": name == current, "staged": name == trial,
               "rollback": name == target, "good": rec.get("good", 0), "failed": rec.get("failed", 0),
               "failed_why": rec.get("failed_why", ""), "merged_from": rec.get("merged_from", ""),
               "etc_conflicts": rec.get("etc_conflicts", []), "present": name in names,
               "state": rec.get("state", "")}
        if disk and name in names:
            files, total, private = disk_use(sysroot.deployment_path(name))
            row.update({"files": files, "bytes": total, "private_bytes": private})
        rows.append(row)
    return {"sysroot": sysroot.path, "board": config.board, "remote": config.url, "branch": config.branch,
            "booted": booted, "current": current, "staged": trial, "rollback": target,
            "boot_count": contract.get("count"), "boot_limit": contract.get("limit"),
            "failed": contract.get("failed") or None, "env_ok": contract.get("env_ok", True),
            "env_problem": contract.get("problem"), "deployments": rows, "keep": config.keep,
            "free_bytes": fs.free_bytes(sysroot.dir), "reserve": config.reserve,
            "boot_history": (state.get("boot_history") or [])[-10:], "last_result": state.get("last_result")}


def prune(sysroot, booted, keep=None, dry_run=False, protect=()):
    """Remove deployments beyond ``keep`` (config default), then objects nothing kept reaches.

    The caller holds the sysroot lock. Commits of the kept deployments and each branch head
    are the roots of the object prune.
    """
    from . import prune as prune_mod

    keep = keep if keep is not None else sysroot.config().keep
    contract = sysroot.bootloader().read()
    check_contract(contract, "pruning")
    state = sysroot.load_state()
    if changed(reconcile(sysroot, state, contract)) and not dry_run:
        sysroot.save_state(state)
    recs = records(state)
    names = on_disk(sysroot)
    from .deploy import read_fallback

    protect = list(protect) + [read_fallback(sysroot)]
    doomed, kept = prune_plan(names, recs, contract, booted, keep, protect)
    if not dry_run and doomed:
        for name in doomed:
            remove(sysroot, name)
        for name in doomed:
            recs.pop(name, None)
        sysroot.save_state(state)
    roots = [commit_id(name) for name in kept]
    repo = sysroot.repo()
    with repo.lock():
        result = prune_mod.prune(repo, 1, roots, dry_run)
    result["deployments_removed"] = doomed
    result["deployments_kept"] = kept
    return result
