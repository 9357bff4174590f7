"""What the device runs early at every boot (``boot``), and the boot-selection changes built on
the same rules: ``mark_good``, ``rollback``.

``boot`` (docs/sysroot.md, "At every boot"):
1. finish or clean up interrupted work: half-built deployments (deploy/.tmp-*), repository and
   sysroot temp files, state records of deployments that never became visible; on U-Boot
   devices check both boot script copies and restore a missing or damaged one (bootscript);
2. read the boot contract; an unusable boot environment (U-Boot then ran on its defaults and
   booted what boot/updater-env.txt names) is rewritten from the board's defaults with the
   running deployment as the known-good one, and reported; with the running deployment
   unknown it is only reported;
3. the boot script gave up on a trial (contract ``failed`` set): record a "fallback" event in
   the boot history, mark that deployment failed, clear ``failed``;
4. booted the staged trial: run the health-check hooks of the device configuration; all pass:
   mark it good (current = trial, trial cleared, count 0: one write); one fails: cancel the
   trial (the next boot returns to the known-good deployment) and exit 1;
5. booted the known-good deployment: record it (and a trial attempt that did not get this far).
State is saved before the boot selection is written: an interruption repeats an event rather
than losing it.
"""

import os

from . import deploy as deploy_mod
from . import deployments, fs
from .bootloader import name_problem
from .errors import BootError, NotFoundError
from .sysroot import add_history, records, set_result


def _unknown_booted(sysroot, doing):
    return BootError("%s: cannot tell which deployment is running (no updater.deployment= on the kernel "
                     "command line)" % doing,
                     "run this on the device; tests and demos point $UPDATER_CMDLINE at a file holding "
                     "'updater.deployment=NAME'")


def run_health_checks(commands, booted, say):
    """[{"command", "ok", "status"}] for each hook, run in order; stops at the first failure."""
    out = []
    for cmd in commands:
        if not fs.exists(cmd):
            out.append({"command": cmd, "ok": False, "status": 127})
            say("health check %s: missing" % cmd)
            break
        # The name comes from the boot environment: only a shell-safe one goes on the command line.
        name = booted if booted and name_problem(booted) is None else ""
        status = os.system("UPDATER_DEPLOYMENT=%s '%s' 1>&2" % (name, cmd))
        ok = status == 0
        out.append({"command": cmd, "ok": ok, "status": status >> 8 if status > 255 else status})
        say("health check %s: %s" % (cmd, "ok" if ok else "FAILED (status %d)" % status))
        if not ok:
            break
    return out


def cleanup_events(cleaned, reconciled):
    """Plain-word lines for what clean_interrupted and reconcile found after an interruption."""
    out = []
    if cleaned.get("deploy_tmp"):
        out.append("removed %d half-built deployment(s) left by an interrupted deploy" % cleaned["deploy_tmp"])
    temps = (cleaned.get("repo_tmp") or 0) + (cleaned.get("sysroot_tmp") or 0)
    if temps:
        out.append("removed %d temporary file(s) left by an interrupted pull or deploy" % temps)
    for name in reconciled["removed"]:
        out.append("removed deployment %s: an interrupted deploy built it but never staged it" % name)
    for name in reconciled["finished"]:
        out.append("deployment %s was staged just before an interruption; it is ready" % name)
    for name in reconciled["adopted"]:
        out.append("found deployment %s without a record and adopted it" % name)
    for name in reconciled["dropped"]:
        if name not in reconciled["missing"]:
            out.append("forgot deployment %s: its directory is gone (an interrupted deploy never finished it, "
                       "or it was removed by hand)" % name)
    for name in reconciled["missing"]:
        out.append("the boot selection names deployment %s, which is missing" % name)
    return out


def boot(sysroot, booted=None, health=True, say=None):
    """The early-boot step; returns a result dict with "ok". The caller holds the sysroot lock."""
    say = say or (lambda text: None)
    booted = booted if booted is not None else sysroot.booted()
    result = {"booted": booted, "events": [], "health_checks": [], "action": "none", "ok": True}
    result["cleaned"] = deploy_mod.clean_interrupted(sysroot)
    bl = sysroot.bootloader()
    contract = bl.read()
    state = sysroot.load_state()
    result["reconciled"] = deployments.reconcile(sysroot, state, contract)
    result["events"] += cleanup_events(result["cleaned"], result["reconciled"])
    if sysroot.config().bootloader == "uboot":
        from . import bootscript

        result["events"] += bootscript.check_and_restore(sysroot.path)
    if not contract.get("env_ok", True):
        if not _repair_env(sysroot, bl, state, booted, contract.get("problem"), result):
            add_history(state, "env-problem", booted, str(contract.get("problem")))
            sysroot.save_state(state)
            result.update({"ok": False, "action": "env-problem"})
            result["events"].append("the boot environment is unusable (%s) and the running deployment is "
                                    "unknown, so it was not rewritten" % contract.get("problem"))
            return result
        contract = bl.read()
    failed = contract.get("failed")
    if failed:
        detail = "the boot script gave up on %s and booted %s" % (failed, booted or "an unknown deployment")
        deployments.mark_failed(state, failed, "did not boot within the attempt limit")
        add_history(state, "fallback", booted, detail)
        result["events"].append(detail)
        sysroot.save_state(state)
        bl.write({"failed": ""})
        contract = bl.read()
    current, trial = contract.get("current"), contract.get("trial")
    if booted is None:
        add_history(state, "unknown", None, "no updater.deployment= on the kernel command line")
        sysroot.save_state(state)
        result.update({"ok": False, "action": "unknown-booted"})
        result["events"].append("cannot tell which deployment is running")
        return result
    if booted == trial and trial:
        checks = run_health_checks(sysroot.config().health_checks if health else [], booted, say)
        result["health_checks"] = checks
        if checks and not checks[-1]["ok"]:
            why = "health check %s failed (status %d)" % (checks[-1]["command"], checks[-1]["status"])
            deployments.mark_failed(state, booted, why)
            add_history(state, "health-failed", booted, why)
            set_result(state, "boot", False, "trial %s: %s; the next boot returns to %s" % (booted, why, current))
            sysroot.save_state(state)
            bl.write({"trial": "", "count": 0})
            result.update({"ok": False, "action": "trial-cancelled"})
            result["events"].append("%s: the next boot returns to %s" % (why, current))
            return result
        _confirm(sysroot, bl, state, booted, "boot")
        result["action"] = "marked-good"
        result["events"].append("trial %s is healthy: it is now the known-good deployment" % booted)
        return result
    if booted == current:
        result["events"].append("%s is the known-good deployment" % booted)
        if trial and (contract.get("count") or 0) >= 1:
            detail = "trial %s did not start (attempt %s of %s); running %s" % (
                trial, contract.get("count"), contract.get("limit"), booted)
            add_history(state, "trial-attempt-failed", booted, detail)
            result["events"].append(detail)
        elif not failed:
            add_history(state, "booted", booted, "")
        if not (records(state).get(booted) or {}).get("good"):
            deployments.mark_good(state, booted)
        sysroot.save_state(state)
        return result
    detail = "running %s, which is neither the known-good (%s) nor the staged deployment (%s)" % (
        booted, current or "-", trial or "-")
    add_history(state, "unexpected", booted, detail)
    sysroot.save_state(state)
    result.update({"ok": False, "action": "unexpected-deployment"})
    result["events"].append(detail)
    return result


def _repair_env(sysroot, bl, state, booted, problem, result):
    """The boot environment failed its CRC (a write torn by a power cut, worn flash): U-Boot ran
    on its built-in defaults and boot.cmd booted what boot/updater-env.txt names. Write a whole
    environment again - the board's defaults, its boot settings and the contract with the
    running deployment as the known-good one - so the next boot and the next deploy work. Values
    that lived only in the lost env (bootdelay, per-unit values) are not recovered. False when
    the running deployment is unknown or not on disk (nothing is written then)."""
    if not booted or not fs.is_dir(sysroot.deployment_path(booted)):
        return False
    named = deploy_mod.read_fallback(sysroot)
    how = "booted %s, the known-good deployment boot/updater-env.txt names" % booted if named == booted else \
        "booted %s (boot/updater-env.txt names %s)" % (booted, named or "nothing")
    why = "the U-Boot environment was unusable (%s): U-Boot ran on its defaults and %s" % (problem, how)
    deployments.mark_good(state, booted)
    add_history(state, "env-repaired", booted, why)
    set_result(state, "boot", True, "rewrote the U-Boot environment with %s as the known-good deployment" % booted)
    sysroot.save_state(state)
    deploy_mod.write_fallback(sysroot, booted)
    bl.write({"current": booted, "trial": "", "count": 0, "failed": "", "limit": deploy_mod.attempt_limit(sysroot)},
             force=True)
    result["action"] = "env-repaired"
    result["events"].append("%s; rewrote the environment from the board's defaults with %s as the known-good "
                            "deployment" % (why, booted))
    return True


def _confirm(sysroot, bl, state, name, command):
    deployments.mark_good(state, name)
    add_history(state, "good", name, "confirmed by %s" % command)
    set_result(state, command, True, "%s is the known-good deployment" % name)
    sysroot.save_state(state)
    deploy_mod.write_fallback(sysroot, name)  # before the env write (see write_fallback)
    bl.write({"current": name, "trial": "", "count": 0})


def mark_good(sysroot, booted=None):
    """Confirm the running deployment: a running trial becomes the known-good one."""
    booted = booted if booted is not None else sysroot.booted()
    if booted is None:
        raise _unknown_booted(sysroot, "marking the booted deployment good")
    bl = sysroot.bootloader()
    contract = bl.read()
    deployments.check_contract(contract, "marking %s good" % booted)
    state = sysroot.load_state()
    if booted == contract.get("trial"):
        _confirm(sysroot, bl, state, booted, "mark-good")
        return {"deployment": booted, "changed": True, "current": booted}
    if booted == contract.get("current"):
        if not (records(state).get(booted) or {}).get("good"):
            deployments.mark_good(state, booted)
            sysroot.save_state(state)
        return {"deployment": booted, "changed": False, "current": booted}
    raise BootError("marking %s good: it is neither the staged trial (%s) nor the known-good deployment (%s)"
                    % (booted, contract.get("trial") or "none", contract.get("current") or "none"),
                    "deploy it again, or reboot into the staged deployment first")


def rollback(sysroot, booted=None):
    """Cancel a pending trial, else stage the rollback target for a trial boot."""
    booted = booted if booted is not None else sysroot.booted()
    bl = sysroot.bootloader()
    contract = bl.read()
    deployments.check_contract(contract, "rolling back")
    state = sysroot.load_state()
    deployments.reconcile(sysroot, state, contract)
    current, trial = contract.get("current"), contract.get("trial")
    if trial:
        deployments.mark_failed(state, trial, "rolled back by request")
        set_result(state, "rollback", True, "cancelled trial %s; the next boot uses %s" % (trial, current))
        sysroot.save_state(state)
        bl.write({"trial": "", "count": 0})
        return {"cancelled": trial, "next_boot": current, "staged": None}
    names = deployments.on_disk(sysroot)
    target = deployments.rollback_target(names, records(state), contract, booted)
    if target is None:
        raise NotFoundError("rolling back: no other deployment to go back to (only %s)" % (current or "none"),
                            "'updater --sysroot %s status' lists the deployments" % sysroot.path)
    set_result(state, "rollback", True, "staged %s for a trial boot" % target)
    sysroot.save_state(state)
    bl.write({"trial": target, "count": 0, "limit": deploy_mod.attempt_limit(sysroot)})
    return {"cancelled": None, "next_boot": target, "staged": target}
