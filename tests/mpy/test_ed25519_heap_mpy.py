# heap: 64K
"""Ed25519 verification alone within a small heap: every RFC 8032 vector and every refusal case.

64K covers compiling updater/ed25519.py and updater/sha512.py from source as well; a device
running precompiled or frozen modules needs less. Prints the heap left in use after verifying.
"""

import gc

from ed25519_vectors import INVALID, VALID
from mpytest import run

from updater import ed25519


def test_vectors_in_small_heap():
    for name, _seed, pub, msg, sig in VALID:
        assert ed25519.verify_pure(bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig)), name
        gc.collect()
    for name, pub, msg, sig in INVALID:
        assert not ed25519.verify_pure(bytes.fromhex(pub), bytes.fromhex(msg), bytes.fromhex(sig)), name
        gc.collect()
    if hasattr(gc, "mem_alloc"):
        print("heap in use after verifying: %d bytes" % gc.mem_alloc())


run(globals())
