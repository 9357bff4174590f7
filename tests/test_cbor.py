"""The device CBOR codec against cbor2.dumps(canonical=True), on CPython and MicroPython."""

import os
import random
import subprocess
import sys

import cbor2
import pytest

from updater import cbor
from updater.errors import FormatError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_CASES = 3000


def random_value(rng, depth=0):
    kinds = ["int", "bigint", "neg", "bytes", "text", "bool", "none"]
    if depth < 4:
        kinds += ["list", "map"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, rng.randrange(0, 1 << 20)])
    if kind == "bigint":
        return rng.randrange(0, 1 << 64)
    if kind == "neg":
        return -rng.randrange(1, (1 << 64) + 1)
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 23, 24, 30, 300])))
    if kind == "text":
        alphabet = "abcxyz019 _-/=\u00e9\u4e2d\U0001f600\n\t\"\\"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 24, 40])))
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "none":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    out = {}
    for _ in range(rng.randrange(0, 6)):
        key = rng.choice([rng.randrange(-300, 300), "k%d" % rng.randrange(1000), bytes([rng.randrange(256)]),
                          "".join(rng.choice("ab") for _ in range(rng.randrange(0, 4)))])
        out[key] = random_value(rng, depth + 1)
    return out


def cases(n=N_CASES, seed=8949):
    rng = random.Random(seed)
    return [random_value(rng) for _ in range(n)]


def test_encode_matches_cbor2_canonical():
    for value in cases():
        assert cbor.encode(value) == cbor2.dumps(value, canonical=True), value


def test_decode_of_cbor2_bytes_roundtrips():
    for value in cases():
        data = cbor2.dumps(value, canonical=True)
        assert cbor.decode(data) == value
        assert cbor2.loads(cbor.encode(value)) == value


def test_non_canonical_cbor2_output_is_refused():
    data = cbor2.dumps({"bb": 1, "a": 2})  # insertion order, not canonical
    with pytest.raises(FormatError, match="canonical order"):
        cbor.decode(data)
    with pytest.raises(FormatError, match="float"):
        cbor.decode(cbor2.dumps(1.5))


def test_truncations_never_crash():
    rng = random.Random(1)
    for value in cases(300, seed=2):
        data = cbor.encode(value)
        for cut in range(len(data)):
            with pytest.raises(FormatError):
                cbor.decode(data[:cut])
        if data:
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            try:
                cbor.decode(bytes(flipped))
            except FormatError:
                pass


@pytest.mark.micropython
def test_differential_under_micropython(tmp_path):
    path = tmp_path / "cases.tsv"
    with open(path, "w") as f:
        for value in cases():
            f.write("%r\t%s\n" % (value, cbor2.dumps(value, canonical=True).hex()))
    mpy = os.path.join(os.path.dirname(sys.executable), "micropython")
    env = dict(os.environ, MICROPYPATH=ROOT + ":" + os.path.join(ROOT, "tests", "mpy"),
               CBOR_CASES=str(path), MPYTEST_TMP=str(tmp_path))
    proc = subprocess.run([mpy, "-X", "heapsize=2M", os.path.join(ROOT, "tests", "mpy", "test_cbor_mpy.py")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   test_differential_cases" in proc.stdout
