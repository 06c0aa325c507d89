"""Where a mistyped or pm2-only command leads: pm2's command names, what pyvm2 offers instead,
and the closest command for a typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_CLOUD = ("pm2.io (PM2 Plus) is pm2's hosted service; pyvm2 has no cloud link",
          "see every app in the browser with: pyvm2 web")
_MODULES = ("pm2 modules are Node packages; pyvm2 has no module system",
            "log rotation is built in (log_max_size, log_retain in $PYVM2_HOME/config.json); "
            "run any other tool as an app with: pyvm2 start")
_SETTINGS = ("pm2's module settings have no pyvm2 counterpart",
             "pyvm2's own settings live in $PYVM2_HOME/config.json "
             "(log_max_size, log_retain, log_compress)")
_NODE = ("Node's inspector and profiler have no pyvm2 counterpart",
         "run the app under a Python profiler yourself, e.g. "
         "pyvm2 start app.py --interpreter-args '-m cProfile -o /tmp/app.prof'")
_GIT = ("pyvm2 does not move apps between git commits",
        "update the checkout yourself, then: pyvm2 restart NAME")

#: pm2 commands that pyvm2 does not have and will not have: (what to say, what to use instead).
UNSUPPORTED: dict[str, tuple[str, str]] = {
    **{c: _CLOUD for c in ("plus", "link", "unlink", "monitor", "unmonitor", "open", "login",
                           "logout", "register")},
    **{c: _MODULES for c in ("install", "uninstall", "module:update", "module:generate", "package",
                             "publish", "autoinstall", "install-otel", "uninstall-otel")},
    **{c: _SETTINGS for c in ("set", "get", "conf", "config", "unset", "multiset")},
    **{c: _NODE for c in ("inspect", "profile:mem", "profile:cpu")},
    **{c: _GIT for c in ("pull", "forward", "backward")},
    "deploy": ("pyvm2 has no ssh deploy",
               "write the running apps to a file with pyvm2 export, then deploy with your own "
               "tool (git, rsync, ansible) and run pyvm2 start FILE on the target"),
    "trigger": ("pm2 actions (trigger) need pm2's Node library inside the app",
                "let the app react to a signal instead and send it one: pyvm2 signal SIGUSR2 NAME"),
    "serve": ("pyvm2 does not serve static files itself",
              "run a server as an app: pyvm2 start 'python3 -m http.server 8080' --name static"),
    "logrotate": ("pyvm2 rotates its log files itself (no logrotate entry needed)",
                  "set the limits in $PYVM2_HOME/config.json: log_max_size, log_retain, "
                  "log_compress"),
    "send": ("pyvm2 does not write to an app's standard input",
             "let the app read a fifo or a socket instead"),
    "attach": ("pyvm2 does not attach a terminal to an app",
               "follow its output with: pyvm2 logs NAME"),
    "deepUpdate": ("pyvm2 is updated with pip", "pip install -U pyvm2, then: pyvm2 update"),
    "slist": ("pyvm2 has no system-information dump",
              "pyvm2 report shows versions, limits and the daemon's state"),
    "create": ("pyvm2 does not generate a sample app",
               "write a sample ecosystem file with: pyvm2 init"),
    "examples": ("pyvm2 has no examples command", "see pyvm2 --help and the README's tour"),
}

#: pm2 commands that pyvm2 does not have yet: what to use meanwhile.
NOT_YET: dict[str, str] = {}

#: Every command pm2 7 has (binaries/CLI.js), aliases included.
PM2_COMMANDS = frozenset({
    "start", "stop", "restart", "reload", "delete", "del", "list", "ls", "l", "ps", "status",
    "jlist", "prettylist", "describe", "desc", "info", "show", "env", "id", "pid", "logs", "log",
    "flush", "reloadLogs", "ping", "kill", "save", "dump", "cleardump", "resurrect", "startup",
    "unstartup", "update", "updatePM2", "reset", "monit", "imonit", "dashboard", "dash",
    "ecosystem", "init", "report", "scale", "sendSignal", "startOrRestart", "startOrReload",
    "startOrGracefulReload", "gracefulReload", "completion", *UNSUPPORTED, *NOT_YET,
})


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to word (case-insensitive), or None when nothing is close."""
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    low = word.lower()
    if low in by_lower:
        return by_lower[low]
    found = difflib.get_close_matches(low, list(by_lower), n=1, cutoff=0.6)
    if found:
        return by_lower[found[0]]
    # `desc` for `describe`, `start` for `startOrReload`: a long enough prefix counts
    prefixed = sorted(c for c in by_lower if len(low) >= 3 and (c.startswith(low) or low.startswith(c)))
    return by_lower[prefixed[0]] if prefixed else None


def unknown_command(word: str, commands: Iterable[str]) -> tuple[str, str]:
    """The error line and hint for `pyvm2 WORD` when WORD is no pyvm2 command."""
    commands = set(commands)
    if word in UNSUPPORTED:
        what, instead = UNSUPPORTED[word]
        return f'"{word}" is a pm2 command that pyvm2 does not have: {what}', instead
    if word in NOT_YET:
        return (f'"{word}" is a pm2 command that pyvm2 does not have yet',
                f"meanwhile: {NOT_YET[word]}")
    near = closest(word, commands | set(UNSUPPORTED) | set(NOT_YET))
    message = f'unknown command "{word}"'
    if near is None:
        return message, "see the commands with: pyvm2 --help"
    if near in commands:
        return message, f"did you mean: pyvm2 {near}"
    note = "does not have it yet" if near in NOT_YET else "does not have it"
    return message, f'did you mean "{near}"? pyvm2 {note}; see pyvm2 --help'


def unknown_option(option: str, command: str, options: Iterable[str]) -> tuple[str, str]:
    """The error line and hint for an option the command does not take."""
    long = [o for o in options if o.startswith("--")]
    near = None
    if option.startswith("--"):
        found = closest(option[2:], [o[2:] for o in long])
        near = f"--{found}" if found else None
    message = f'unknown option {option} for "pyvm2 {command}"'
    if near is not None:
        return message, f"did you mean {near}? (see pyvm2 {command} --help)"
    return message, f"see the options with: pyvm2 {command} --help"
