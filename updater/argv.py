"""A small declarative command-line parser (MicroPython has no argparse on a real device).

Commands are declared with ``Arg`` and ``Opt``; ``Parser.parse`` returns the chosen command and
a plain ``Namespace``. Global options come before the command name, command options after it;
both may use ``--name=value``. A command name may have several words (``env print``).
Errors raise UsageError (exit code 2) and say which option or argument was wrong.
"""

from .errors import UsageError


class Arg:
    """A positional argument. nargs: "1" (required), "?" (optional), "*" or "+" (a list)."""

    def __init__(self, name, help="", nargs="1", dest=None):
        self.name = name
        self.help = help
        self.nargs = nargs
        self.dest = dest or name.lower().replace("-", "_")


class Opt:
    """An option. ``flag`` takes no value; ``multiple`` collects a list; ``kind`` int or str."""

    def __init__(self, flags, help="", dest=None, metavar=None, default=None, flag=False,
                 multiple=False, kind=str, choices=None, required=False):
        if isinstance(flags, str):
            flags = (flags,)
        self.flags = flags
        self.help = help
        self.dest = dest or flags[-1].lstrip("-").replace("-", "_")
        self.metavar = metavar or self.dest.upper()
        self.default = [] if multiple and default is None else default
        self.flag = flag
        self.multiple = multiple
        self.kind = kind
        self.choices = choices
        self.required = required

    def usage(self):
        text = "/".join(self.flags)
        if not self.flag:
            text += " " + self.metavar
        return text


class Namespace:
    def __init__(self, **kw):
        for key in kw:
            setattr(self, key, kw[key])

    def get(self, key, default=None):
        return getattr(self, key, default)


class Command:
    def __init__(self, name, summary, run, args=(), options=(), description="", state=False,
                 needs=None, host=False):
        self.name = name
        self.summary = summary
        self.run = run
        self.args = list(args)
        self.options = list(options)
        self.description = description
        self.state = state
        self.needs = needs
        self.host = host
        if state:
            self.options.append(Opt("--json", "print one JSON document on stdout", flag=True))


HELP = Opt(("-h", "--help"), "show this help and exit", flag=True)


def _convert(opt, raw):
    if opt.choices is not None and raw not in opt.choices:
        raise UsageError("option %s: expected one of %s, got '%s'" % (opt.flags[-1], ", ".join(opt.choices), raw))
    if opt.kind is int:
        try:
            text = raw.strip().lower()
            return int(text[2:], 16) if text.startswith("0x") else int(text)
        except ValueError:
            raise UsageError("option %s: expected a whole number, got '%s'" % (opt.flags[-1], raw))
    return raw


def _parse_options(argv, options, ns, stop_at_positional, allow_positional=True):
    """Consume options from argv; return (positionals, rest) where rest starts at the command."""
    by_flag = {}
    for opt in options:
        for flag in opt.flags:
            if flag not in by_flag:  # earlier lists (the command's own) win
                by_flag[flag] = opt
    positionals = []
    i = 0
    only_args = False
    while i < len(argv):
        word = argv[i]
        if only_args or word == "-" or not word.startswith("-") or _is_number(word):
            if stop_at_positional:
                return positionals, argv[i:]
            positionals.append(word)
            i += 1
            continue
        if word == "--":
            only_args = True
            i += 1
            continue
        value = None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        opt = by_flag.get(word)
        if opt is None:
            raise UsageError("unknown option %s" % word, "see --help for the options of this command")
        if opt.flag:
            if value is not None:
                raise UsageError("option %s takes no value" % word)
            setattr(ns, opt.dest, True)
            i += 1
            continue
        if value is None:
            if i + 1 >= len(argv):
                raise UsageError("option %s needs a value (%s)" % (word, opt.metavar))
            value = argv[i + 1]
            i += 2
        else:
            i += 1
        value = _convert(opt, value)
        if opt.multiple:
            getattr(ns, opt.dest).append(value)
        else:
            setattr(ns, opt.dest, value)
    return positionals, []


def _is_number(word):
    return len(word) > 1 and word[0] == "-" and word[1:].isdigit()


def _defaults(ns, options):
    for opt in options:
        if opt.flag:
            setattr(ns, opt.dest, bool(opt.default))
        elif opt.multiple:
            setattr(ns, opt.dest, [])
        else:
            setattr(ns, opt.dest, opt.default)


class Parser:
    def __init__(self, prog, summary, global_options, commands):
        self.prog = prog
        self.summary = summary
        self.global_options = [HELP] + list(global_options)
        self.commands = {}
        for cmd in commands:
            self.commands[cmd.name] = cmd

    def _find(self, words):
        """The longest registered command name made of the first words; (command, used)."""
        for n in (3, 2, 1):
            if len(words) >= n:
                name = " ".join(words[:n])
                if name in self.commands:
                    return self.commands[name], n
        return None, 0

    def parse(self, argv):
        """(command or None, global namespace, command namespace or None)."""
        gns = Namespace()
        _defaults(gns, self.global_options)
        _, rest = _parse_options(argv, self.global_options, gns, stop_at_positional=True)
        if gns.help or not rest:
            return None, gns, None
        cmd, used = self._find(rest)
        if cmd is None:
            rest = self._hoist_group_options(rest)
            cmd, used = self._find(rest)
        if cmd is None:
            group = [name for name in self.commands if name.startswith(rest[0] + " ")]
            if group:
                if len(rest) == 1 or rest[1] in ("-h", "--help"):
                    gns.help_group = rest[0]
                    return None, gns, None
                raise UsageError("unknown command '%s %s'" % (rest[0], rest[1]),
                                 "'%s %s --help' lists them" % (self.prog, rest[0]))
            raise UsageError("unknown command '%s'" % rest[0], "'%s --help' lists the commands" % self.prog)
        ns = Namespace()
        own = {}
        for opt in cmd.options:
            for flag in opt.flags:
                own[flag] = True
            own[opt.dest] = True
        shared = [o for o in self.global_options if o is not HELP and o.dest not in own]
        options = [HELP] + cmd.options + shared
        _defaults(ns, [HELP] + cmd.options)
        for opt in shared:
            setattr(ns, opt.dest, getattr(gns, opt.dest))
        for opt in self.global_options:  # a global flag given before the command also sets the command's own
            if opt.flag and opt.dest in own and getattr(gns, opt.dest, False):
                setattr(ns, opt.dest, True)
        positionals, _ = _parse_options(rest[used:], options, ns, stop_at_positional=False)
        if ns.help:
            return cmd, gns, ns
        for opt in shared:
            setattr(gns, opt.dest, getattr(ns, opt.dest))
        self._bind_args(cmd, positionals, ns)
        for opt in cmd.options:
            if opt.required and getattr(ns, opt.dest) in (None, []):
                raise UsageError("%s: option %s is required" % (cmd.name, opt.flags[-1]))
        return cmd, gns, ns

    def _hoist_group_options(self, rest):
        """'GROUP --opt V SUB ARGS' -> 'GROUP SUB --opt V ARGS': options may come before a subcommand."""
        members = [c for n, c in self.commands.items() if n.startswith(rest[0] + " ")]
        if not members or len(rest) < 3 or not rest[1].startswith("-") or rest[1] in ("-h", "--help", "--"):
            return rest
        valued = {}
        for c in members:
            for opt in c.options + self.global_options:
                for flag in opt.flags:
                    valued[flag] = valued.get(flag, False) or not opt.flag
        i = 1
        while i < len(rest) and rest[i].startswith("-") and rest[i] != "--":
            i += 1 if "=" in rest[i] or not valued.get(rest[i]) else 2
        cmd, used = self._find([rest[0]] + rest[i:])
        if cmd is None:
            return rest
        return [rest[0]] + rest[i:i + used - 1] + rest[1:i] + rest[i + used - 1:]

    def _bind_args(self, cmd, positionals, ns):
        words = list(positionals)
        for i, arg in enumerate(cmd.args):
            later_required = 0
            for other in cmd.args[i + 1 :]:
                if other.nargs in ("1", "+"):
                    later_required += 1
            if arg.nargs == "1":
                if not words:
                    raise UsageError("%s: missing argument %s" % (cmd.name, arg.name),
                                     "usage: %s" % self.usage(cmd))
                setattr(ns, arg.dest, words.pop(0))
            elif arg.nargs == "?":
                setattr(ns, arg.dest, words.pop(0) if len(words) > later_required else None)
            else:
                take = max(0, len(words) - later_required)
                if arg.nargs == "+" and take == 0:
                    raise UsageError("%s: missing argument %s" % (cmd.name, arg.name),
                                     "usage: %s" % self.usage(cmd))
                setattr(ns, arg.dest, words[:take])
                words = words[take:]
        if words:
            raise UsageError("%s: unexpected argument '%s'" % (cmd.name, words[0]),
                             "usage: %s" % self.usage(cmd))

    def usage(self, cmd):
        parts = [self.prog, cmd.name]
        for opt in cmd.options:
            text = opt.usage()
            parts.append(text if opt.required else "[" + text + "]")
        for arg in cmd.args:
            parts.append({"1": "%s", "?": "[%s]", "*": "[%s...]", "+": "%s..."}[arg.nargs] % arg.name)
        return " ".join(parts)

    def help_command(self, cmd):
        lines = ["usage: " + self.usage(cmd), "", cmd.summary]
        if cmd.description:
            lines += ["", cmd.description]
        if cmd.args:
            lines += ["", "arguments:"]
            for arg in cmd.args:
                lines.append("  %-22s %s" % (arg.name, arg.help))
        lines += ["", "options:"]
        for opt in [HELP] + cmd.options:
            lines.append("  %-22s %s" % (opt.usage(), opt.help))
        lines += ["", "global options (%s --help) also work after the command." % self.prog]
        return "\n".join(lines)

    def help_main(self, group=None):
        lines = ["usage: %s [global options] COMMAND [options] [arguments]" % self.prog, "", self.summary, ""]
        if group is None:
            lines.append("global options:")
            for opt in self.global_options:
                lines.append("  %-22s %s" % (opt.usage(), opt.help))
            lines.append("")
        lines.append("commands:")
        for name in sorted(self.commands):
            if group is not None and not name.startswith(group + " "):
                continue
            cmd = self.commands[name]
            lines.append("  %-22s %s" % (name, cmd.summary))
        lines += ["", "'%s COMMAND --help' describes one command." % self.prog,
                  "exit codes: 0 ok, 1 operation failed, 2 usage or configuration error"]
        return "\n".join(lines)
