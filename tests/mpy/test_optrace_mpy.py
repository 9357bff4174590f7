# heap: 512K
"""The test-only durable-operation trace (UPDATER_TRACE_OPS) under MicroPython and CPython: the
spec parser, numbering, printing, and stopping at the chosen operation, on a real fs hook."""

from mpytest import raises, run, scratch

from updater import fs, optrace
from updater.errors import UsageError


class Stream:
    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.append(text)


class Stopped(Exception):
    pass


def no_sleep(seconds):
    raise Stopped()


def test_parse():
    assert optrace.parse("1") == (True, None, None)
    assert optrace.parse("stop:7") == (False, 7, None)
    assert optrace.parse("stop:2:rename /x:y") == (False, 2, "rename /x:y")
    for bad in ("0", "yes", "stop", "stop:0", "stop:x", "stop:3:", "print:1"):
        raises(UsageError, optrace.parse, bad)


def test_print_every_operation():
    out = Stream()
    tracer = optrace.Tracer("1", out, no_sleep)
    d = scratch("optrace-print")
    fs.set_hook(tracer)
    try:
        fs.write_atomic(d + "/a", b"data")
    finally:
        fs.set_hook(None)
    assert tracer.count >= 2  # write, (fsync,) rename
    assert out.lines[0] == "updater-op 1 write %s\n" % out.lines[0].split(" ", 3)[3][:-1]
    renames = [line for line in out.lines if line.endswith(" rename %s/a\n" % d)]
    assert len(renames) == 1 and renames[0].startswith("updater-op ")
    numbers = [int(line.split(" ")[1]) for line in out.lines]
    assert numbers == list(range(1, tracer.count + 1))
    assert len(out.lines) == tracer.count


def test_stop_at_the_nth_matching_operation():
    out = Stream()
    tracer = optrace.Tracer("stop:2:mkdir", out, no_sleep)
    d = scratch("optrace-stop")
    fs.set_hook(tracer)
    try:
        fs.mkdir(d + "/one", exist_ok=True)
        raises(Stopped, fs.mkdir, d + "/two")
    finally:
        fs.set_hook(None)
    assert not fs.exists(d + "/two")  # stopped BEFORE the operation
    assert out.lines[0] == "updater-op 2 mkdir %s/two\n" % d
    assert out.lines[1].startswith("updater-op stopped: UPDATER_TRACE_OPS=stop:2:mkdir reached operation 2")


def test_install_from_env():
    assert optrace.install_from_env(lambda name: None) is None
    tracer = optrace.install_from_env(lambda name: "stop:99", Stream())
    try:
        assert tracer.stop_at == 99
    finally:
        fs.set_hook(None)


run(globals())
