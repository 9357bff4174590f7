"""``updater console push`` over pty pairs to a device shell running the real ``updater receive``.

The device is /bin/sh on a pty running this checkout's updater (CPython or MicroPython) on a
sysroot that trusts the test build server's key; bundles are real signed bundles
(``updater bundle``), so the install verifies them like a network pull and stages a
deployment. A relay between the host's pty and the device's pty drops, corrupts and stalls
bytes (seeded) or cuts the line at a chosen byte.
"""

import io
import json
import os
import random
import threading
import time

import pytest
from deltakit import BOARD, Host, make_device

import serialrig as rig
from updater.cli import main
from updater.host import bundler


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-host")
    h = Host(tmp / "host", symlinks=False, big=30000)  # MicroPython devices store no symlinks
    h.commit("1")
    h.delta("1")
    h.publish()
    h.bundle = str(tmp / "v1.bundle")
    bundler.write(h.repo, h.commits["1"], None, h.bundle)
    with open(h.bundle, "rb") as f:
        data = bytearray(f.read())
    data[len(data) * 2 // 3] ^= 0x01  # one bit inside the delta part
    h.tampered = str(tmp / "tampered.bundle")
    with open(h.tampered, "wb") as f:
        f.write(bytes(data))
    return h


@pytest.fixture
def bundle(host):
    return host.bundle


class Rig:
    def __init__(self, base, pub, interpreter="cpython", board=BOARD, **relay):
        self.sysroot = make_device(base, "", pub, board=board)
        self.line = rig.Line(**relay)
        self.shell = rig.spawn_on(self.line.ds, ["/bin/sh", "-i"], env=rig.device_env())
        self.device_cmd = rig.device_cmd(self.sysroot.path, interpreter)

    def push(self, bundle, *extra):
        return cli("console", "--port", self.line.host_path, "push", bundle, "--device-cmd", self.device_cmd,
                   "--json", *extra)

    def deployments(self):
        return sorted(os.listdir(self.sysroot.deploy_dir))

    def installed(self):
        return len(self.deployments()) == 1

    def staging(self):
        tmp = self.sysroot.tmp_dir
        return sorted(n for n in os.listdir(tmp) if n.startswith("receive-")) if os.path.isdir(tmp) else []

    def close(self):
        rig.kill(self.shell)
        self.line.close()


@pytest.fixture
def make_rig(tmp_path, host):
    made = []

    def make(**kw):
        r = Rig(tmp_path / ("device%d" % len(made)), host.pub, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def result(out):
    return json.loads(out)


def test_push_installs_and_reports_the_result(make_rig, bundle):
    r = make_rig()
    rc, out, err = r.push(bundle)
    doc = result(out)
    assert rc == 0, err
    assert doc["ok"] is True and doc["stage"] == "install" and doc["size"] == os.path.getsize(bundle)
    assert doc["result"]["version"] == "1" and doc["stats"]["retransmits"] == 0
    assert r.deployments() == [doc["result"]["deployment"]] and r.staging() == []
    rc, out, err = cli("console", "--port", r.line.host_path, "status", "--json", "--device-cmd", r.device_cmd)
    assert rc == 0, err
    assert [d["name"] for d in result(out)["deployments"]] == [doc["result"]["deployment"]]


@pytest.mark.micropython
def test_push_to_a_micropython_device_over_a_faulty_line(make_rig, bundle):
    r = make_rig(interpreter="micropython", seed=11, drop=0.03, corrupt=0.03, stall=0.02)
    rc, out, err = r.push(bundle, "--line-timeout", "5")
    assert rc == 0, err
    doc = result(out)
    assert doc["ok"] and doc["stats"]["retransmits"] > 0
    assert sum(r.line.relay.faults.values()) > 0
    assert r.installed()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_push_survives_drops_corruption_and_stalls(make_rig, bundle, seed):
    r = make_rig(seed=seed, drop=0.05, corrupt=0.05, stall=0.03)
    rc, out, err = r.push(bundle, "--line-timeout", "5")
    assert rc == 0, err
    assert result(out)["ok"] and r.installed()
    faults = r.line.relay.faults
    assert faults["dropped"] and faults["corrupted"]


def test_garbage_on_the_line_before_and_during_the_transfer(make_rig, bundle):
    r = make_rig()
    relay = r.line.relay
    noise = random.Random(3)
    with relay.lock:  # boot noise towards the host, printable junk typed at the shell
        relay.pending["d2h"] += bytes(noise.randrange(256) for _ in range(3000))
        relay.pending["h2d"] += b"ls /nonexistent junk"

    def inject():
        deadline = time.monotonic() + 20
        while relay.count["h2d"] < 20000 and time.monotonic() < deadline:
            time.sleep(0.005)
        with relay.lock:  # binary noise into the running receiver, and back
            relay.pending["h2d"] += bytes(noise.randrange(256) for _ in range(2000))
            relay.pending["d2h"] += bytes(noise.randrange(256) for _ in range(2000))

    t = threading.Thread(target=inject)
    t.start()
    rc, out, err = r.push(bundle)
    t.join()
    assert rc == 0, err
    assert result(out)["ok"] and r.installed()


def h2d_bytes_for(bundle, device_cmd):
    """Roughly how many host->device bytes a push sends: typed command, frames, END."""
    size = os.path.getsize(bundle)
    return len(device_cmd) + 60 + size + 16 * (size // 1024 + 1) + 52


@pytest.mark.slow
@pytest.mark.parametrize("where", [0.0005, 0.05, 0.4, 0.8, 0.999])
@pytest.mark.parametrize("receiver", ["waits", "exits"])
def test_a_transfer_cut_anywhere_installs_nothing_then_resumes(make_rig, bundle, where, receiver):
    r = make_rig()
    total = h2d_bytes_for(bundle, r.device_cmd)
    r.line.relay.cut_at = max(10, int(total * where))
    args = ["--timeout", "3", "--line-timeout", "1"]
    if receiver == "exits":
        args += ["--receive-args", "--idle-timeout 1"]
    rc, out, err = r.push(bundle, *args)
    assert rc == 1, (out, err)
    assert "giving up" in err and "resumes" in err
    assert not r.installed()
    held = r.staging()
    time.sleep(1.5 if receiver == "exits" else 0)
    r.line.relay.restore()
    rc, out, err = r.push(bundle)
    assert rc == 0, err
    doc = result(out)
    assert doc["ok"] and r.installed() and r.staging() == []
    if held and where >= 0.05:
        assert doc["stats"]["resumed_from"] > 0, (where, receiver, doc["stats"])
        assert doc["stats"]["sent_bytes"] < os.path.getsize(bundle)


@pytest.mark.slow
def test_the_line_drops_and_comes_back_during_one_push(make_rig, bundle):
    r = make_rig()
    relay = r.line.relay
    relay.cut_at = 30000

    def heal():
        deadline = time.monotonic() + 20
        while not relay.down and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(2.5)
        relay.restore()

    t = threading.Thread(target=heal)
    t.start()
    rc, out, err = r.push(bundle, "--line-timeout", "1", "--timeout", "30")
    t.join()
    assert rc == 0, err
    doc = result(out)
    assert doc["ok"] and doc["stats"]["connections"] >= 2
    assert "reconnecting" in err
    assert doc["stats"]["sent_bytes"] < 2 * os.path.getsize(bundle)


def test_a_bundle_for_another_board_is_refused(make_rig, bundle):
    r = make_rig(board="beaglebone-black")
    rc, out, err = r.push(bundle)
    doc = result(out)
    assert rc == 1 and doc["ok"] is False and doc["stage"] == "install"
    assert "board qemu-arm64, this device is beaglebone-black" in doc["error"]["message"]
    assert r.deployments() == [] and r.staging() == []


def test_a_tampered_bundle_is_refused_and_nothing_changes(make_rig, host):
    r = make_rig()
    rc, out, err = r.push(host.tampered)
    doc = result(out)
    assert rc == 1 and doc["ok"] is False and doc["stage"] == "install"
    assert "SHA-256" in doc["error"]["message"] and "tampered" in doc["error"]["message"]
    assert r.deployments() == [] and r.staging() == []
    assert r.sysroot.repo().read_ref("qemu-arm64/stable") is None
    rc, out, err = cli("console", "--port", r.line.host_path, "push", host.tampered, "--device-cmd", r.device_cmd)
    assert rc == 1 and "did not install" in out and "try:" in out


def test_base64_encoding_for_consoles_that_cannot_be_raw(make_rig, bundle):
    r = make_rig(seed=5, corrupt=0.02)
    rc, out, err = r.push(bundle, "--encoding", "base64", "--frame", "768")
    assert rc == 0, err
    assert result(out)["ok"] and r.installed()


def test_a_device_without_the_command_is_reported(make_rig, bundle):
    r = make_rig()
    rc, out, err = cli("console", "--port", r.line.host_path, "push", bundle, "--device-cmd", "no-such-updater")
    assert rc == 1
    assert "exited at once" in err and "not found" in err and "--device-cmd" in err


def test_no_deploy_installs_into_the_repository_only(make_rig, host, bundle):
    r = make_rig()
    rc, out, err = r.push(bundle, "--receive-args", "--no-deploy")
    assert rc == 0, err
    doc = result(out)
    assert doc["ok"] and doc["result"]["deploy_requested"] is False and "deployment" not in doc["result"]
    assert r.deployments() == [] and r.sysroot.repo().read_ref("qemu-arm64/stable") == host.commits["1"]


@pytest.mark.parametrize("interpreter", ["cpython", pytest.param("micropython", marks=pytest.mark.micropython)])
def test_receive_on_a_port_path_already_listening(tmp_path, host, interpreter):
    """``updater receive --port PATH`` started by other means (no shell): push finds its heartbeats."""
    import shlex
    import subprocess

    dev = make_device(tmp_path / "dev", "", host.pub)
    line = rig.Line()
    argv = shlex.split(rig.device_cmd(dev.path, interpreter)) + ["receive", "--port", line.dev_path,
                                                                  "--idle-timeout", "20"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=rig.device_env())
    try:
        rc, out, err = cli("console", "--port", line.host_path, "push", host.bundle, "--json",
                           "--device-cmd", "/nonexistent/never-typed")
        assert rc == 0, err
        assert result(out)["ok"] and len(os.listdir(dev.deploy_dir)) == 1
        _, said = proc.communicate(timeout=20)
        assert proc.returncode == 0 and b"received and installed" in said
    finally:
        rig.kill(proc)
        line.close()
