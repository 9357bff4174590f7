"""U-Boot environment and board commands: env print, env set, board show, board list.

The board comes from --board (a name on the board search path, or a .conf file path), else from
the device configuration of --sysroot ([device] board). --env-file PATH stands for the board's
env medium (a flash bank or disk image): the same offsets, in that file instead of the device.
"""

from .commands import Arg, Lazy, Opt, command
from .errors import ConfigError, EnvError, UsageError

board_mod = Lazy("updater.board")
envstore = Lazy("updater.envstore")
ubootenv = Lazy("updater.ubootenv")

ENV_FILE = Opt("--env-file", "use this image file as the board's env medium (same offsets)", metavar="PATH")


def selected_board(opts, name=None):
    """The Board named by ``name``, --board, or the --sysroot device configuration."""
    name = name or opts.get("board")
    if not name and opts.get("sysroot"):
        from .sysroot import Sysroot

        name = Sysroot.open(opts.get("sysroot")).config().board
        if not name:
            raise ConfigError("the device configuration of %s names no board" % opts.get("sysroot"),
                              "set [device] board = NAME in its updater/config, or pass --board NAME")
    if not name:
        raise ConfigError("no board selected", "pass --board NAME (updater board list shows them) or --sysroot PATH")
    return board_mod.load(name)


def open_store(opts):
    board = selected_board(opts)
    return board, envstore.open_env(board, opts.get("env_file"), lock=not opts.get("env_file"))


def env_report(board, store, env):
    out = {"board": board.name, "medium": store.storage.name, "offsets": board.env.offsets(),
           "size": board.env.size}
    out.update(env.summary())
    return out


@command("env print", "Print U-Boot environment variables (all, or the named ones)",
         args=[Arg("NAME", "variables to print (all if none)", nargs="*")],
         options=[ENV_FILE], state=True,
         description="Reads both copies of a redundant env and uses the one U-Boot would use.\n"
                     "Exit 1 if no copy is valid or a named variable is not set.")
def cmd_env_print(ctx, opts):
    board, store = open_store(opts)
    env = store.load_valid()
    variables = env.variables
    missing = [n for n in opts.name if n not in variables]
    if missing:
        raise EnvError("printing the U-Boot environment of %s: not set: %s" % (board.name, ", ".join(missing)),
                       "'updater env print' lists every variable")
    chosen = dict((n, variables[n]) for n in opts.name) if opts.name else variables
    data = env_report(board, store, env)
    data["vars"] = chosen
    ctx.emit(data, lambda d: ubootenv.format_text(d["vars"]))
    return 0


def parse_assignments(words):
    changes = {}
    for word in words:
        eq = word.find("=")
        if eq <= 0:
            raise UsageError("env set: expected NAME=VALUE, got '%s'" % word,
                             "NAME= (empty value) deletes the variable")
        name, value = word[:eq], word[eq + 1:]
        why = ubootenv.name_problem(name) or ubootenv.value_problem(value)
        if why:
            raise UsageError("env set: %s" % why)
        if name in changes:
            raise UsageError("env set: %s is given twice" % name)
        changes[name] = value
    return changes


@command("env set", "Set (NAME=VALUE) or delete (NAME=) U-Boot variables in one write",
         args=[Arg("ASSIGNMENT", "NAME=VALUE; an empty VALUE deletes NAME", nargs="+")],
         options=[ENV_FILE, Opt("--force", "write even if no valid copy exists (starts from the "
                                           "board's default environment)", flag=True)],
         state=True,
         description="A redundant env is written to the copy not in force, which then takes over;\n"
                     "the copy in force is never touched by a failed write.")
def cmd_env_set(ctx, opts):
    changes = parse_assignments(opts.assignment)
    board, store = open_store(opts)
    before = store.load()
    new = store.update(changes, force=opts.force)
    info = getattr(store, "last_write", {})
    data = {"board": board.name, "medium": store.storage.name, "copy": info.get("copy"),
            "offset": info.get("offset"), "flags": info.get("flags"), "forced": not before.valid(),
            "set": dict((k, v) for k, v in changes.items() if v), "deleted": sorted(k for k in changes if not changes[k]),
            "count": len(new)}
    ctx.say("wrote copy %s of the env on %s (%d variables)" % (data["copy"], data["medium"], data["count"]))
    ctx.emit(data)
    return 0


def board_text(b):
    d = b.as_dict()
    e, bt, dev, disk = d["env"], d["boot"], d["device"], d["disk"]
    lines = ["board %s (%s): %s" % (b.name, b.arch, b.description), "config: %s" % b.source,
             "env: %s %s%s, offset 0x%x, size 0x%x, sector 0x%x%s, pad 0x%02x"
             % (e["storage"], e["device"], (" base 0x%x" % e["base"]) if e["base"] is not None else "",
                e["offset"], e["size"], e["sector_size"],
                (", redundant at 0x%x (%s flags)" % (e["redundant_offset"], e["flags"]))
                if e["redundant_offset"] is not None else ", single copy", e["pad"]),
             "default env: %s" % (e["default_env"] or "none"),
             "boot: %s %s, initrd %s, fdt %s, attempts %d"
             % (bt["boot_command"], bt["kernel"], bt["initrd"] or "none", bt["fdt"] or "firmware's", bt["attempt_limit"]),
             "bootargs: %s" % bt["bootargs"], "root: %s" % bt["root"],
             "variables: " + " ".join("%s=%s" % (k, bt["vars"][k]) for k in board_mod.CONTRACT_KEYS + board_mod.SETTING_KEYS),
             "device: codecs %s, signatures %s" % (" ".join(dev["codecs"]), "required" if dev["require_signatures"] else "optional"),
             "disk: %s %s%s, first partition at %d MiB"
             % (disk["table"], disk["device"], (" %d MiB" % (disk["size"] >> 20)) if disk["size"] else "",
                disk["first_offset"] >> 20)]
    for p in disk["partitions"]:
        lines.append("  %d %-10s %-6s %-5s %s%s%s" % (p["index"], p["name"], p["type"], p["fs"],
                                                   "rest" if p["size"] is None else "%d MiB" % (p["size"] >> 20),
                                                   " bootable" if p["bootable"] else "",
                                                   (" role=" + p["role"]) if p["role"] != "none" else ""))
    return "\n".join(lines)


@command("board show", "Show a board config (or export its fw_env.config for fw_printenv)",
         args=[Arg("NAME", "board name or .conf path (default: --board or the device's)", nargs="?")],
         options=[Opt("--fw-env-config", "print only the fw_env.config for libubootenv", flag=True), ENV_FILE],
         state=True)
def cmd_board_show(ctx, opts):
    b = selected_board(opts, opts.name)
    if opts.fw_env_config:
        text = board_mod.fw_env_config(b, opts.get("env_file"))
        ctx.emit({"board": b.name, "fw_env_config": text}, text)
        return 0
    if opts.get("env_file"):
        raise UsageError("board show: --env-file only applies with --fw-env-config")
    ctx.emit(b.as_dict(), lambda d: board_text(b))
    return 0


@command("board list", "List the board configs on the search path", state=True)
def cmd_board_list(ctx, opts):
    found = board_mod.available()
    boards = []
    for name in sorted(found):
        try:
            b = board_mod.load(found[name])
            boards.append({"name": name, "path": found[name], "arch": b.arch, "description": b.description})
        except (ConfigError, EnvError) as err:
            boards.append({"name": name, "path": found[name], "error": str(err)})
    data = {"boards": boards, "search_path": board_mod.search_path()}

    def human(d):
        if not d["boards"]:
            return "no board configs in: " + ", ".join(d["search_path"])
        return "\n".join("%-20s %-6s %s" % (x["name"], x.get("arch", "?"), x.get("description") or x.get("error", ""))
                         for x in d["boards"])

    ctx.emit(data, human)
    return 0

