"""``updater receive``: take a bundle over the serial console, then install it like a network pull.

The host (``updater console push``) types ``updater --sysroot S receive`` at the device's
shell; this module puts the console in raw mode, runs the protocol of updater.serialframe, keeps
the file in a private staging directory (receive-SHA256/ in the sysroot tmp directory, mode 0700), and
once the whole file is held and its SHA-256 matches, calls the bundle install, which verifies
the bundle exactly like a network pull before changing anything. The outcome goes back to
the host in a RESULT frame. Nothing installs from an incomplete or unverified file: an
interrupted transfer leaves only the partial file, which the next push resumes.

Runs on CPython and MicroPython.
"""

from . import fs
from .objects import to_hex
from . import receiver as rv
from . import serialframe as sf
from .progress import elapsed_ms, now_ms

STAGING_PREFIX = "receive-"
PART_NAME = "bundle.part"
PROGRESS_MS = 1000  # at most one PROGRESS frame a second while installing
LINGER_MS = 5000  # resend the RESULT this long while waiting for the host's BYE


class Clock:
    """Milliseconds since creation that never wrap (MicroPython's ticks_ms wraps after 12 days)."""

    def __init__(self):
        self.last = now_ms()
        self.total = 0

    def __call__(self):
        step = elapsed_ms(self.last)
        self.last = now_ms()
        self.total += max(0, step)
        return self.total




class StagingStore:
    """The received file in the sysroot tmp directory, receive-SHA256/bundle.part (one transfer kept).

    ``check_space(needed, doing)`` raises SpaceError when the rest of the file will not fit.
    """

    def __init__(self, tmp_dir, check_space=None):
        self.tmp_dir = tmp_dir
        self.check_space = check_space
        self.dir = None
        self.path = None
        self.held = 0

    def begin(self, size, digest):
        name = STAGING_PREFIX + to_hex(digest)
        fs.makedirs(self.tmp_dir)
        for entry in fs.listdir(self.tmp_dir):
            if entry.startswith(STAGING_PREFIX) and entry != name:
                fs.remove_tree(fs.join(self.tmp_dir, entry))  # an older, abandoned transfer
        self.dir = fs.join(self.tmp_dir, name)
        self.path = fs.join(self.dir, PART_NAME)
        fs.mkdir(self.dir, 0o700, exist_ok=True)
        fs.chmod(self.dir, 0o700)
        st = fs.lstat(self.path)
        if st is not None and (not st.is_reg() or st.size > size):
            fs.remove_tree(self.path)
            st = None
        if st is None:
            fs.create_exclusive(self.path, 0o600).close()
        self.held = st.size if st is not None else 0
        if self.check_space is not None:
            self.check_space(size - self.held, "receiving a bundle of %d bytes into %s" % (size, self.dir))
        return self.held

    def write(self, offset, data):
        fs.write_at(self.path, offset, data, sync=False)
        self.held = offset + len(data)

    def verify(self):
        return fs.sha256_file(self.path)

    def discard(self):
        if self.dir is not None:
            fs.remove_tree(self.dir)
        self.held = 0


def _install(rx, store, install, send, clock):
    """Run ``install(path, progress)`` and return the RESULT document (never raises)."""
    last = [None]

    def progress(done, total=None):
        t = clock()
        if last[0] is not None and t - last[0] < PROGRESS_MS and done != total:
            return
        last[0] = t
        doc = {"stage": "install", "done": done, "total": total}
        send([(sf.PROGRESS, 0, sf.json_payload(doc))])

    progress(0, None)
    try:
        result = install(store.path, progress)
        doc = {"ok": True, "stage": "install", "result": result if result is not None else {}}
    except Exception as err:  # noqa: BLE001 - every failure, even a bug, reaches the technician
        doc = sf.error_doc("install", err)
    doc["size"] = rx.size
    doc["sha256"] = to_hex(rx.digest)
    return doc


def receive(port, store, install, max_total=sf.DEFAULT_MAX_TOTAL, idle_timeout_ms=60000,
            encoding="raw", clock=None, linger_ms=LINGER_MS):
    """Serve one transfer on ``port`` (an updater.fs.tty.Port, or anything with read/write).

    Returns a summary dict: "state" (closed, finished or idle), "size", "held", "resumed_from",
    "result" (the RESULT document or None), "garbage" and "corrupt" byte/frame counts.
    The partial file is kept unless the transfer finished (installed or refused).
    """
    clock = clock or Clock()
    rx = rv.Receiver(store, max_total)
    parser = sf.make_parser(encoding)
    encoder = sf.make_encoder(encoding)

    def send(frames):
        for ftype, seq, payload in frames:
            port.write(encoder(ftype, seq, payload))

    now = clock()
    send(rx.start(now))
    heard = now
    finished_at = None
    idle = False
    while rx.state != rv.CLOSED:
        data = port.read(4096, 100)
        now = clock()
        for ftype, seq, payload in (parser.feed(data) if data else ()):
            heard = now
            send(rx.handle(ftype, seq, payload, now))
            if rx.state == rv.RECEIVED:
                rx.finish(_install(rx, store, install, send, clock))
                send([(sf.RESULT, 0, sf.json_payload(rx.result))])
                now = heard = clock()
                rx.last_sent = now
            if rx.state == rv.FINISHED and finished_at is None:
                finished_at = now
                store.discard()
            if rx.state == rv.CLOSED:
                break
        if rx.state == rv.CLOSED:
            break
        send(rx.tick(now))
        if finished_at is not None and now - finished_at > linger_ms:
            break
        if now - heard > idle_timeout_ms:
            idle = finished_at is None
            break
    return {"state": "idle" if idle else rx.state, "size": rx.size, "held": rx.offset,
            "resumed_from": rx.resumed_from, "result": rx.result,
            "garbage": parser.garbage, "corrupt": parser.corrupt}


def bundle_installer(sysroot, say=None, deploy=True):
    """``install(path, progress) -> dict`` for ``sysroot`` (a Sysroot): what ``updater install``
    does with a bundle file, then (``deploy``) a deployment of the new commit staged for a trial
    boot, as ``updater upgrade`` does after a pull. The bundle is copied into a private directory
    and verified like a network pull (updater.pull.install) before anything changes.
    """

    def install(path, progress):
        from . import deploy as deploy_mod
        from . import pull as pull_mod

        with sysroot.lock(True, say):
            pulled = pull_mod.install(sysroot, path, progress, lock=False)
            cid = sysroot.repo().read_ref(sysroot.config().branch)
            booted = sysroot.booted()
            done = deployed = None
            if cid is not None and deploy:
                done = deploy_mod.is_up_to_date(sysroot, cid, sysroot.bootloader().read(), booted)
                if done is None:
                    deployed = deploy_mod.deploy(sysroot, cid, None, None, booted, say)
        result = summarize(pulled, cid, done, deployed)
        result["deploy_requested"] = deploy
        return result

    return install


def summarize(pulled, cid, up_to_date, deployed):
    """The install result the host shows (one frame: scalars only)."""
    out = {"commit": to_hex(cid) if cid is not None else None, "up_to_date": up_to_date}
    if isinstance(pulled, dict):
        for key in ("version", "changed", "delta", "delta_used", "delta_error", "objects_fetched"):
            if key in pulled and not isinstance(pulled[key], (dict, list)):
                out["pulled_" + key] = pulled[key]
    if deployed:
        for key in ("deployment", "version", "staged", "current"):
            out[key] = deployed.get(key)
    return out


def run(sysroot_path, port, install=None, max_total=sf.DEFAULT_MAX_TOTAL, idle_timeout_ms=60000,
        encoding="raw", deploy=True):
    """Receive into the sysroot's staging area through ``port`` (raw mode while it runs)."""
    from .sysroot import Sysroot

    root = Sysroot.open(sysroot_path)
    if install is None:
        install = bundle_installer(root, deploy=deploy)
    store = StagingStore(root.tmp_dir, root.check_space)
    if encoding == "raw":
        port.make_raw()
    try:
        return receive(port, store, install, max_total, idle_timeout_ms, encoding)
    finally:
        port.restore()
