"""A tiny test harness for running device-core tests under MicroPython (and CPython).

A test script defines functions named test_*; ``run(globals())`` calls each in name order,
prints one line per test and exits 1 if any failed. ``raises(exc, fn, *args)`` asserts an error.
Scratch files go below the directory named by $MPYTEST_TMP (a pytest tmp_path).
"""

import os
import sys

TMP = os.getenv("MPYTEST_TMP") or "/tmp"


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as err:
        return err
    raise AssertionError("expected %s from %r" % (exc.__name__, fn))


def scratch(name):
    path = TMP + "/" + name
    try:
        os.mkdir(path)
    except OSError:
        pass
    return path


def run(namespace):
    names = sorted(n for n in namespace if n.startswith("test_") and callable(namespace[n]))
    failed = 0
    for name in names:
        try:
            namespace[name]()
            print("ok   " + name)
        except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
            failed += 1
            print("FAIL " + name)
            sys.print_exception(err) if hasattr(sys, "print_exception") else __import__("traceback").print_exc()
    impl = sys.implementation.name
    print("%s: %d passed, %d failed" % (impl, len(names) - failed, failed))
    sys.exit(1 if failed else 0)
