"""The boot flow on a U-Boot device (the board's env in a NOR-flash-like medium in memory):
boot/updater-env.txt is durable BEFORE every env write that changes upd_current, and
`updater boot` rewrites an env that failed its CRC (a torn write) with the running deployment
as the known-good one, then deploy works again."""

import os

import pytest

from crashharness import run_cli
from devicekit import sample

from updater import board as board_mod
from updater import bootflow, deploy, envstore, fs, ubootenv
from updater.bootloader import UBootBootloader
from updater.sysroot import DeviceConfig, Sysroot

BRANCH = "qemu-arm64/stable"


class Medium(envstore.MemoryStorage):
    """Erased NOR flash that logs its writes into the same list as the fs hook."""

    def __init__(self, size, log):
        envstore.MemoryStorage.__init__(self, size, erase_size=size, nor=True, name="flash")
        self.log = log

    def erase(self, offset, size):
        self.log.append(("env-erase", ""))
        envstore.MemoryStorage.erase(self, offset, size)

    def write(self, offset, data):
        self.log.append(("env-write", ""))
        envstore.MemoryStorage.write(self, offset, data)


class FlashSysroot(Sysroot):
    def __init__(self, path, store):
        Sysroot.__init__(self, path)
        self.store = store

    def bootloader(self, board=None, env_file=None):
        return UBootBootloader(board_mod.load("qemu-arm64"), store=self.store)


@pytest.fixture
def device(tmp_path):
    board = board_mod.load("qemu-arm64")
    log = []
    store = envstore.EnvStore(board.env, Medium(board.env.size, log), board_mod.default_env(board))
    store.replace(board_mod.default_env(board), force=True)
    root = str(tmp_path / "sysroot")
    Sysroot.create(root, DeviceConfig(board="qemu-arm64", bootloader="uboot", branch=BRANCH))
    sysroot = FlashSysroot(root, store)
    repo = os.path.join(root, "updater", "repo")
    commits = {}
    for v in ("1", "2"):
        rc, out, err = run_cli(["--repo", repo, "commit", sample(str(tmp_path / ("v" + v)), v), "--branch", BRANCH,
                                "--version", v, "--timestamp", str(1000 + int(v))])
        assert rc == 0, err
        commits[v] = bytes.fromhex(out.split()[1])
    sysroot.log, sysroot.commits, sysroot.medium = log, commits, store.storage
    return sysroot


def fallback_file(sysroot):
    return os.path.join(sysroot.path, deploy.FALLBACK_FILE)


def ops_around_env_write(sysroot, fn):
    """Run fn with the fs hook logging into sysroot.log; the ops before the first env write."""
    del sysroot.log[:]
    fs.set_hook(lambda op, path: sysroot.log.append((op, path)))
    try:
        result = fn()
    finally:
        fs.set_hook(None)
    first = [i for i, (op, _) in enumerate(sysroot.log) if op.startswith("env-")]
    assert first, "no env write happened"
    return result, sysroot.log[:first[0]]


def renamed_fallback(ops, sysroot):
    return ("rename", fallback_file(sysroot)) in ops


def test_fallback_file_is_durable_before_each_env_write_that_changes_current(device):
    first, before = ops_around_env_write(device, lambda: deploy.deploy(device, device.commits["1"]))
    a = first["deployment"]
    assert first["current"] and renamed_fallback(before, device)
    assert ("fsync", os.path.dirname(fallback_file(device))) in before
    assert "upd_current=%s\n" % a in open(fallback_file(device)).read()

    staged, before = ops_around_env_write(device, lambda: deploy.deploy(device, device.commits["2"], booted=a))
    b = staged["deployment"]
    assert staged["staged"] and not renamed_fallback(before, device)  # current does not change
    assert deploy.read_fallback(device) == a

    result, before = ops_around_env_write(device, lambda: bootflow.boot(device, booted=b))
    assert result["action"] == "marked-good"
    assert renamed_fallback(before, device) and deploy.read_fallback(device) == b
    assert device.bootloader().read()["current"] == b


def test_boot_rewrites_a_torn_env_with_the_running_deployment(device):
    a = deploy.deploy(device, device.commits["1"])["deployment"]
    b = deploy.deploy(device, device.commits["2"], booted=a)["deployment"]
    # A power cut in the middle of the mark-good write: erased, half programmed. U-Boot ran on its
    # defaults and boot.cmd booted what boot/updater-env.txt names (written first: B).
    deploy.write_fallback(device, b)
    device.medium.buf[0x200:] = b"\xff" * (len(device.medium.buf) - 0x200)
    assert not device.bootloader().read()["env_ok"]
    with pytest.raises(Exception) as err:
        deploy.deploy(device, device.commits["1"], booted=b)
    assert "cannot be used" in str(err.value)

    result = bootflow.boot(device, booted=b)
    assert result["ok"] and result["action"] == "env-repaired"
    text = " ".join(result["events"])
    assert "U-Boot environment was unusable" in text and "known-good deployment" in text and b in text
    env = ubootenv.parse(bytes(device.medium.buf))
    assert env.valid()
    assert env.variables["upd_current"] == b and not env.variables.get("upd_trial")
    assert env.variables["bootcmd"] == "run distro_bootcmd"  # from the board's defaults
    assert env.variables["upd_bootargs"] == board_mod.load("qemu-arm64").boot.bootargs()
    state = device.load_state()
    assert state["boot_history"][-2]["event"] == "env-repaired"
    # The device works again: a new deployment is staged as a trial.
    again = deploy.deploy(device, device.commits["1"], booted=b)
    assert again["staged"]


def test_boot_reports_but_does_not_touch_a_torn_env_when_the_running_deployment_is_unknown(device):
    deploy.deploy(device, device.commits["1"])
    device.medium.buf[0x100:0x200] = b"\x00" * 0x100
    before = bytes(device.medium.buf)
    result = bootflow.boot(device, booted="0" * 64 + ".0")
    assert not result["ok"] and result["action"] == "env-problem"
    assert "not rewritten" in " ".join(result["events"])
    assert bytes(device.medium.buf) == before


def test_boot_removes_a_built_but_unstaged_deployment_and_says_so(device):
    """A cut after the deployment was renamed into place but before the env write: the record
    is still "pending" and the env does not name it; `updater boot` removes it (and does not
    adopt the directory it just removed)."""
    a = deploy.deploy(device, device.commits["1"])["deployment"]
    b = deploy.deploy(device, device.commits["2"], booted=a)["deployment"]
    device.bootloader().write({"trial": ""})
    state = device.load_state()
    state["deployments"][b]["state"] = "pending"
    device.save_state(state)
    result = bootflow.boot(device, booted=a)
    assert result["ok"], result
    assert "removed deployment %s: an interrupted deploy built it but never staged it" % b in result["events"]
    assert not [e for e in result["events"] if "adopted" in e], result["events"]
    assert not os.path.exists(device.deployment_path(b))
    assert b not in device.load_state()["deployments"]
