# heap: 1M
"""Pull and install on the device side, run by tests/test_pull_micropython.py under MicroPython and
CPython against a local HTTP server the pytest side started (URLs and keys come in env vars):

  PULL_URL1  repository published at v1 with a full delta
  PULL_URL2  the same repository published at v2 with a v1 -> v2 delta (bsdiff, zlib)
  PULL_URL3  published at v3 with no delta (single objects)
  PULL_BUNDLE  a v3 -> v4 bundle;  PULL_KEY  the public key (hex);  PULL_NOW  the clock
  PULL_C1..PULL_C4  the commit IDs (hex) each step must reach
"""

import os

from mpytest import raises, run, scratch

from updater import fsck, httpfetch, pull
from updater.errors import FetchError, TrustError
from updater.sysroot import DeviceConfig, Sysroot

BRANCH = "qemu-arm64/stable"
NOW = int(os.getenv("PULL_NOW") or "0")
STATE = {}


def env(name):
    value = os.getenv(name)
    assert value, "missing env var " + name
    return value


def device():
    if "dev" not in STATE:
        cfg = DeviceConfig(board="qemu-arm64", url=env("PULL_URL1"), branch=BRANCH, keys=["build.pub"], reserve=0)
        STATE["dev"] = Sysroot.create(scratch("mpydev"), cfg, {"build.pub": (env("PULL_KEY") + "\n").encode()}, "user")
    return STATE["dev"]


def check(dev, version):
    assert dev.repo().read_ref(BRANCH) == bytes.fromhex(env("PULL_C" + version)), version
    report = fsck.fsck(dev.repo()).as_dict()
    assert report["ok"], report["problems"]


def test_1_full_delta():
    dev = device()
    seen = []
    r = pull.pull(dev, lambda d, t: seen.append(d), now=NOW)
    assert r["delta_used"] and r["delta"][:5] == "full-" and r["changed"]
    assert seen and seen[-1] > 0
    check(dev, "1")


def test_2_bsdiff_delta_pure_python():
    dev = device()
    r = pull.pull(dev, fetcher=httpfetch.HttpFetcher(env("PULL_URL2")), now=NOW + 1)
    assert r["delta_used"] and r["previous"] == env("PULL_C1") and r["objects_fetched"] == 0
    check(dev, "2")


def test_3_single_objects():
    dev = device()
    r = pull.pull(dev, fetcher=httpfetch.HttpFetcher(env("PULL_URL3")), now=NOW + 2)
    assert not r["delta_used"] and r["objects_fetched"] > 0
    check(dev, "3")
    r = pull.pull(dev, fetcher=httpfetch.HttpFetcher(env("PULL_URL3")), now=NOW + 2)
    assert r["changed"] is False


def test_4_bundle_install():
    dev = device()
    r = pull.install(dev, env("PULL_BUNDLE"), now=NOW + 3)
    assert r["delta_used"] and r["commit"] == env("PULL_C4")
    check(dev, "4")


def test_5_refusals():
    dev = device()
    # the v1 repository is now a replay of an older summary
    raises(TrustError, pull.pull, dev, None, httpfetch.HttpFetcher(env("PULL_URL1")), None, None, NOW + 4)
    raises(FetchError, pull.pull, dev, None, httpfetch.HttpFetcher(env("PULL_URL1") + "/missing"), None, None, NOW + 4)
    check(dev, "4")


run(globals())
