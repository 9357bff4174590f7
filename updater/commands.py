"""The registry of command-line commands and the context each one runs with.

A command module declares commands with the ``command`` decorator::

    @command("env print", "Print U-Boot environment variables",
             args=[Arg("NAME", "variables to print (all if none)", nargs="*")],
             options=[Opt("--env-file", "read the env area from this file", metavar="PATH")],
             state=True)
    def env_print(ctx, opts):
        ...
        ctx.emit({"vars": found}, human=lambda d: ...)
        return 0

``state=True`` adds ``--json``. Command modules are imported at every start, so they import
only ``updater.commands`` (and errors) at top level and their implementation modules inside
each command function: ``updater --help`` and every command start quickly on a small device. ``opts`` holds the command's options and arguments and the
global ones (``opts.repo``, ``opts.sysroot``, ``opts.board``, ``opts.json``, ``opts.no_wait``).
Commands return an exit code or raise an ``updater.errors`` error; ``updater.cli.main`` maps
errors to exit codes and prints them. Commands never print progress themselves: they pass
``ctx.progress(label)`` to the core as its ``progress(done, total)`` callback.
"""

import sys

from . import jsonout
from .argv import Arg, Command, Opt  # noqa: F401  (re-exported for command modules)
from .errors import ConfigError
from .progress import Reporter

REGISTRY = []


class Lazy:
    """A module imported on first use: ``signature = Lazy("updater.signature")`` at the top of a
    command module keeps ``updater --help`` and unrelated commands from paying for its import."""

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attr):
        if self._module is None:
            self._module = __import__(self._name, None, None, ("__name__",))
        return getattr(self._module, attr)


def command(name, summary, args=(), options=(), state=False, description="", host=False):
    def register(fn):
        REGISTRY.append(Command(name, summary, fn, args, options, description, state, host=host))
        return fn

    return register


class Context:
    """What a running command may use: output, progress, the repository and sysroot openers."""

    def __init__(self, opts, stdout=None, stderr=None):
        self.opts = opts
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.json = bool(opts.get("json"))
        self._repo = None
        self._sysroot = None

    # --- output ---------------------------------------------------------------------------
    def out(self, text=""):
        self.stdout.write(text + "\n")

    def say(self, text):
        """A plain progress or status line on stderr (never on stdout, which --json owns)."""
        if not self.opts.get("quiet"):
            self.stderr.write(text + "\n")

    def emit(self, data, human=None):
        """Print ``data`` as one JSON document with --json, else ``human`` (text or function)."""
        if self.json:
            self.stdout.write(jsonout.dumps(data) + "\n")
            return
        if human is None:
            return
        text = human(data) if callable(human) else human
        if text:
            self.out(text.rstrip("\n"))

    def progress(self, label, unit="bytes"):
        if self.opts.get("quiet"):
            from .progress import null

            return null
        return Reporter(label, self.stderr, unit=unit)

    # --- state ----------------------------------------------------------------------------
    def sysroot_path(self):
        path = self.opts.get("sysroot")
        if not path:
            raise ConfigError("this command needs a device sysroot", "pass --sysroot PATH")
        return path

    def repo(self, write=False):
        """The repository of --repo, or else the sysroot's own repository."""
        if self._repo is None:
            from . import repo as repo_mod

            path = self.opts.get("repo")
            if not path and self.opts.get("sysroot"):
                path = self.opts.get("sysroot").rstrip("/") + "/updater/repo"
            if not path:
                raise ConfigError("this command needs a repository", "pass --repo PATH (or --sysroot PATH on a device)")
            self._repo = repo_mod.Repo.open(path)
        return self._repo
