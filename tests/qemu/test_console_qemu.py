"""The field technician's rescue against QEMU's real U-Boot 2023.01, over ``socket://``.

A device whose trial deployment (v3, broken) is staged next to the known-good v1. The host
runs ``updater console --port socket://... uboot env`` (which catches the autoboot countdown),
then ``uboot rollback`` (the trial is recorded as failed and cleared, the env saved to the
flash bank, ``boot``), and the device comes up on v1; ``console status`` then reads the device
from its Linux shell. QEMU waits for the first client on its console socket and accepts a new
one after each command disconnects.
"""

import io
import json
import re
import subprocess
import time

import pytest
from test_boot import make

from qemu import sysroot
from qemu.vm import VM, _free_port
from updater.cli import main
from updater.host.console import Console

pytestmark = pytest.mark.qemu


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_uboot_env_and_rollback_over_socket(rig, tmp_path):
    arch = "arm64"
    _, names, flash, disk = make(rig, tmp_path, arch, ["v1", "v3-broken"], "v1", trial="v3-broken",
                                 env={"bootdelay": "3"})
    a, b = names["v1"], names["v3-broken"]
    vm = VM(arch, flash, [disk], str(tmp_path / "qemu.log"), name="console")
    vm.port = _free_port()
    log = open(str(tmp_path / "qemu.log"), "ab")
    proc = subprocess.Popen(vm.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = "socket://127.0.0.1:%d" % vm.port
    console_log = str(tmp_path / "console.log")
    try:
        deadline = time.monotonic() + 20
        while True:  # QEMU opens its console socket a moment after it starts
            rc, out, err = cli("console", "--port", url, "uboot", "env", "--json", "--wait", "60", "--log",
                               console_log)
            if rc == 0 or "refused" not in err or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["contract"]["current"] == a and doc["contract"]["trial"] == b
        assert doc["env"]["bootcmd"] == "run distro_bootcmd"

        rc, out, err = cli("console", "--port", url, "uboot", "rollback", "--json", "--log", console_log)
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["before"]["trial"] == b and doc["after"]["trial"] is None and doc["after"]["failed"] == b
        assert doc["boot_line"] and a in doc["boot_line"]

        con = Console(url).open()  # watch the device come up on v1
        try:
            idx, _ = con.expect([re.compile(rb"UPDATER-QEMU: ready"), re.compile(rb"trial boot of")], 120)
            assert idx == 0, con.tail_text(1500)
        finally:
            con.close()
        rc, out, err = cli("console", "--port", url, "status", "--json", "--device-cmd", "updater --sysroot /sysroot",
                           "--timeout", "60", "--log", console_log)
        assert rc == 0, err
        status = json.loads(out)
        assert status["booted"] == a and status["current"] == a and not status["staged"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()
    env = sysroot.read_flash_env(flash).variables
    assert env["upd_current"] == a and not env.get("upd_trial") and env["upd_count"] == "0"
