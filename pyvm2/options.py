"""The table of app options: one row per pm2 option, from which everything about options derives.

A row gives the option's canonical name, its aliases, how its value is converted, its default and
meaning (the README's "Supported options" table), the `pyvm2 start` flags that set it, and the
names other process managers use for it. `spec.from_options` validates with the rows, the CLI
builds `start`'s flags from them, and the README table is generated from them:

    python -m pyvm2.options --readme-table

Adding an option is one row here plus its use (an AppSpec field, and what the daemon does with it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pyvm2 import values
from pyvm2.units import (
    UnitError,
    parse_bool,
    parse_cli_seconds,
    parse_ms,
    parse_signal,
    parse_size,
    show,
)


class Flag(NamedTuple):
    """How `pyvm2 start` exposes an option.

    kind: "text" (`--x VALUE`), "switch" (`--x` sets true), "bool" (`--x/--no-x`) or "list"
    (repeatable, comma or space separated). `convert` turns the flag's text into the value the
    option takes in a file, when the two differ (`--watch-delay 2` is seconds, the file's ms).
    """

    decls: tuple[str, ...]
    help: str = ""
    kind: str = "text"
    convert: Callable[[Any], Any] | None = None  # gets a str, or a list of them for "list"


class Foreign(NamedTuple):
    """Another tool's name for an option: `tool`'s `name`, with what differs (`note`)."""

    tool: str
    name: str
    note: str = ""


UNSET: Any = object()  # a converter's answer for "leave the field at its default"


@dataclass(frozen=True)
class Option:
    """One row of the table.

    `convert` turns the written value into the AppSpec field `field` (default: the option's name);
    with `relative`, it also gets the app's cwd. `convert=None` means from_options handles the
    option by itself (script, name, env, instances...). `optional` options have no value by
    default, so false, 0, "" and null leave them unset, as in pm2.
    """

    name: str
    default: str
    meaning: str
    aliases: tuple[str, ...] = ()
    convert: Callable[..., Any] | None = None
    field: str | None = None
    relative: bool = False
    optional: bool = False
    flag: Flag | None = None
    foreign: tuple[Foreign, ...] = ()

    @property
    def target(self) -> str:
        return self.field or self.name


def _autorestart(value: Any) -> bool | str:
    if isinstance(value, str) and value.strip().lower() == "unexpected":
        return "unexpected"
    return parse_bool(value)


def _max_restarts(value: Any) -> int:
    n = values.whole(value, "a whole number of restarts (0 or more)")
    if n < 0:
        raise UnitError(f"max_restarts cannot be negative, got {n}",
                        "0 means: never restart after an unstable exit")
    return n


def _log_retain(value: Any) -> int:
    n = values.whole(value, "a whole number of rotated files to keep")
    if n < 0:
        raise UnitError(f"log_retain cannot be negative, got {n}", "0 keeps no rotated file")
    return n


def _log_type(value: Any) -> str:
    log_type = values.string(value).strip().lower()
    if log_type not in ("raw", "json"):
        raise UnitError(f'expected "raw" or "json", got {show(value)}',
                        '"json" writes one JSON object per line; "raw" the text as is')
    return log_type


def _time(value: Any) -> Any:
    # pm2: `time: true` overrides log_date_format; `time: false` leaves it alone.
    return values.TIME_FORMAT if parse_bool(value) else UNSET


def _interpreter(value: Any) -> str:
    interp = values.string(value).strip()
    if not interp:
        raise UnitError("exec_interpreter is empty",
                        'remove it to choose by extension, or name one such as "python3"')
    return "none" if interp.lower() == "none" else interp


def _cli_watch(values: list[str]) -> bool | list[str]:
    """`--watch` alone (written `--watch=true` by the argv rewrite) watches cwd, as pm2's; with
    paths, those paths."""
    paths = [v for v in values if v != "true"]
    return paths or True


def _cli_seconds(text: str) -> int:
    try:
        return parse_cli_seconds(text)
    except ValueError as e:
        raise UnitError(str(e), "--watch-delay takes seconds (2) or milliseconds (500ms)") from None


def _exit_codes(items: list[str]) -> list[Any]:
    return [int(c) if c.lstrip("-").isdigit() else c for c in items]


def _filter_env_flag(items: list[str]) -> list[str] | bool:
    # pm2: `--filter-env` with no name drops the whole inherited environment
    return list(items) or True


def _log_flag(text: str) -> str | bool:
    # pm2: `-l` with no path writes `<name>.log`
    return text or True


_SUPERVISOR = "supervisor"

OPTIONS: tuple[Option, ...] = (
    Option("name", "script name without extension", "app name; several instances share it",
           flag=Flag(("--name", "-n"), "app name")),
    Option("name_prefix", "none", "the name becomes `<prefix>:<name>`"),
    Option("script", "required", "file to run (relative to `cwd`), or a command on `PATH`",
           aliases=("exec", "cmd", "command"),
           foreign=(Foreign(_SUPERVISOR, "command", "its first word is the script"),)),
    Option("args", "none", "list, or one string split like a POSIX shell",
           convert=lambda v: values.words(v, "args")),
    Option("exec_interpreter", "by extension", "`python3`, `php`, `bash`, `none`, a path",
           aliases=("interpreter",), convert=_interpreter, field="interpreter",
           flag=Flag(("--interpreter", "--exec-interpreter"),
                     "interpreter (php, python3, none, a path)")),
    Option("node_args", "none", "arguments before the script", aliases=("interpreter_args",),
           convert=lambda v: values.words(v, "interpreter_args"), field="interpreter_args",
           flag=Flag(("--interpreter-args", "--node-args"), "arguments for the interpreter")),
    Option("cwd", "the file's folder", "working directory, relative to the ecosystem file",
           flag=Flag(("--cwd",), "working directory (overrides the file's cwd)"),
           foreign=(Foreign(_SUPERVISOR, "directory",
                            "without it supervisor uses its own directory, pyvm2 the file's"),)),
    Option("namespace", "`default`", "a group usable as a target",
           convert=lambda v: values.check_name(values.string(v), "namespace"),
           flag=Flag(("--namespace",), "namespace")),
    Option("instances", "1",
           "N copies (`max` = one per CPU); each gets `NODE_APP_INSTANCE` (see `instance_var`)",
           flag=Flag(("--instances", "-i"), "number of instances, or max"),
           foreign=(Foreign(_SUPERVISOR, "numprocs"),)),
    Option("exec_mode", "`fork`", "`cluster` runs fork copies for non-node apps (with a warning)",
           convert=values.exec_mode),
    Option("instance_var", "`NODE_APP_INSTANCE`", "the variable holding each instance's number",
           convert=lambda v: values.check_var(values.string(v))),
    Option("increment_var", "none", "a variable counted up from its `env` value per instance",
           convert=lambda v: values.check_var(values.string(v)), optional=True),
    Option("env", "`{}`", "environment; `--env <name>` merges `env_<name>` over `env`",
           foreign=(Foreign(_SUPERVISOR, "environment", 'write it as {"NAME": "value"}'),)),
    Option("env_file", "none",
           "a dotenv file (relative to `cwd`) read at start, under `env`; pm2 ignores it",
           optional=True),
    Option("filter_env", "false",
           "`true` drops the inherited environment; a list drops matching names",
           convert=values.filter_env,
           flag=Flag(("--filter-env",), "drop inherited variables whose names contain this "
                     "(all of them when given no name)", "list", _filter_env_flag)),
    Option("port", "none", "sets `PORT` in the environment"),
    Option("append_env_to_name", "false", "with `--env <name>`, the name becomes `<name>-<env>`"),
    Option("max_memory_restart", "none",
           '`"100M"`, `"1G"`, `"512K"` (base 1024): restart above it',
           convert=parse_size, optional=True,
           flag=Flag(("--max-memory-restart",), "restart above this memory, e.g. 100M")),
    Option("autorestart", "true",
           'restart when the app exits; `"unexpected"` (supervisor\'s): only after an exit '
           "not in `stop_exit_codes` (default `[0]`) or a death by a signal",
           convert=_autorestart,
           flag=Flag(("--autorestart/--no-autorestart",), "restart when it exits", "bool")),
    Option("autostart", "true", "`false` registers the app stopped", convert=parse_bool,
           flag=Flag(("--autostart/--no-autostart",), "start now, or only register", "bool")),
    Option("min_uptime", "1000 ms", "a run shorter than this is unstable",
           convert=lambda v: parse_ms(v, minimum=100), flag=Flag(("--min-uptime",), "a shorter run is unstable (ms, or 2s)"),
           foreign=(Foreign(_SUPERVISOR, "startsecs",
                            "startsecs counts seconds, min_uptime milliseconds"),)),
    Option("max_restarts", "16", "unstable restarts in a row before `errored`",
           convert=_max_restarts, flag=Flag(("--max-restarts",), "unstable restarts before errored"),
           foreign=(Foreign(_SUPERVISOR, "startretries", "max_restarts = startretries + 1"),)),
    Option("restart_delay", "0", "ms to wait before an automatic restart", convert=parse_ms,
           flag=Flag(("--restart-delay",), "ms before an automatic restart")),
    Option("exp_backoff_restart_delay", "off", "ms; exponential back-off ×1.5 up to 15 s",
           convert=parse_ms, flag=Flag(("--exp-backoff-restart-delay",), "ms; back off ×1.5 up to 15 s")),
    Option("stop_exit_codes", "none", 'exit codes that mean "done, do not restart"',
           convert=values.stop_exit_codes,
           flag=Flag(("--stop-exit-codes",), "exit codes that mean done", "list", _exit_codes),
           foreign=(Foreign(_SUPERVISOR, "exitcodes",
                            "supervisor applies exitcodes only with autorestart=unexpected; "
                            "stop_exit_codes apply to every exit"),)),
    Option("priority", "none", "lower starts first and stops last (supervisor's `priority`)",
           convert=lambda v: values.whole(v, "a whole number (lower starts first)")),
    Option("kill_signal", "`SIGINT`",
           "the polite stop signal (pm2's default); `SIGTERM` for most Python/PHP workers",
           convert=parse_signal, flag=Flag(("--kill-signal",), "stop signal (default SIGINT)"),
           foreign=(Foreign(_SUPERVISOR, "stopsignal", "supervisor's default is TERM"),)),
    Option("kill_timeout", "1600 ms", "time between the stop signal and SIGKILL",
           convert=parse_ms, flag=Flag(("--kill-timeout", "-k"), "ms before SIGKILL"),
           foreign=(Foreign(_SUPERVISOR, "stopwaitsecs",
                            "stopwaitsecs counts seconds, kill_timeout milliseconds"),)),
    Option("treekill", "true",
           "`false` sends the polite signal to the main process only "
           "(SIGKILL still hits everything)", convert=parse_bool,
           flag=Flag(("--treekill/--no-treekill",), "on stop, signal the whole process tree "
                     "(default) or the main process only", "bool")),
    Option("cron_restart", "none", "restart (or re-run) on a cron schedule", aliases=("cron",),
           convert=values.cron, optional=True,
           flag=Flag(("--cron-restart", "--cron", "-c"), "cron pattern")),
    Option("watch", "false", "restart on file changes (`true` = cwd, or a list of paths)",
           convert=values.watch, relative=True,
           flag=Flag(("--watch",), "restart when files change: in cwd, or in the paths given "
                     "(--watch src --watch lib)", "list", _cli_watch)),
    Option("ignore_watch", "none", "globs not to watch",
           convert=lambda v: values.words(v, "ignore_watch"),
           flag=Flag(("--ignore-watch",), "globs to ignore, space separated")),
    Option("watch_delay", "0", "ms to wait after a change before restarting", convert=parse_ms,
           flag=Flag(("--watch-delay",), "seconds, or Nms", convert=_cli_seconds)),
    Option("out_file", "`$PYVM2_HOME/logs/<name>-out.log`", "stdout log; `/dev/null` discards",
           aliases=("out", "output", "out_log"), convert=values.log_path, relative=True,
           optional=True, flag=Flag(("--output", "-o"), "stdout log file"),
           foreign=(Foreign(_SUPERVISOR, "stdout_logfile", "AUTO: leave it out; NONE: /dev/null"),)),
    Option("error_file", "`$PYVM2_HOME/logs/<name>-error.log`", "stderr log; `/dev/null` discards",
           aliases=("error", "err", "err_file", "err_log"), convert=values.log_path,
           relative=True, optional=True, flag=Flag(("--error", "-e"), "stderr log file"),
           foreign=(Foreign(_SUPERVISOR, "stderr_logfile", "AUTO: leave it out; NONE: /dev/null"),)),
    Option("log_file", "none", "one more log with both streams (`true` = `<name>.log`)",
           aliases=("log",), convert=lambda v, cwd: values.log_path(v, cwd, allow_true=True),
           relative=True, optional=True,
           flag=Flag(("--log", "-l"), "combined log file (`<name>.log` when given no path)",
                     convert=_log_flag)),
    Option("redirect_stderr", "false", "stderr goes to the out log (no error log is written)",
           convert=parse_bool),
    Option("merge_logs", "true unless `instances` is set", "false adds `-<id>` to log names",
           aliases=("combine_logs",), convert=parse_bool,
           flag=Flag(("--merge-logs",), "one log for all instances", "switch")),
    Option("log_date_format", "none", "prefix every line with a dayjs-style date",
           convert=values.string, optional=True, flag=Flag(("--log-date-format",), "date prefixed to each log line")),
    Option("time", "false", "`true` = `log_date_format: YYYY-MM-DDTHH:mm:ss`", convert=_time,
           field="log_date_format",
           flag=Flag(("--time",), "prefix log lines with the time", "switch")),
    Option("log_type", "`raw`", "`json` writes one JSON object per line", convert=_log_type,
           flag=Flag(("--log-type",), "json: one JSON object per log line")),
    Option("disable_logs", "false", "discard output", convert=parse_bool,
           flag=Flag(("--disable-logs",), "write no log files", "switch")),
    Option("log_max_size", "global setting", "rotate a log above this size; 0 never",
           convert=values.parse_log_size),
    Option("log_retain", "global setting", "rotated files kept", convert=_log_retain),
    Option("log_compress", "global setting", "gzip rotated files", convert=parse_bool),
    Option("pid_file", "`$PYVM2_HOME/pids/<name>-<id>.pid`", "where the pid is written; each "
           "instance adds `-<id>` before `.pid` (`app.pid` -> `app-0.pid`), as pm2",
           aliases=("pid",), convert=values.log_path, relative=True, optional=True,
           flag=Flag(("--pid", "-p"), "pid file")),
    Option("user", "you", "run as this user, with its groups and login's `HOME`/`USER`/`LOGNAME`/"
           "`SHELL` (needs a root daemon)", aliases=("uid",),
           convert=values.account,
           flag=Flag(("--uid", "--user"), "run as this user (the daemon must be root)")),
    Option("group", "the user's", "primary group instead of the user's own (needs a root daemon)",
           aliases=("gid",), convert=lambda v: values.account(v, group=True),
           flag=Flag(("--gid", "--group"), "run with this primary group")),
    Option("umask", "the daemon's", 'the app\'s umask, in octal (`"022"`)', convert=values.umask),
    Option("wait_ready", "false",
           "online only once the app says so: `READY=1` on `NOTIFY_SOCKET`, or Node's "
           "`process.send('ready')`", convert=parse_bool,
           flag=Flag(("--wait-ready",), "online only once the app says it is ready", "switch")),
    Option("listen_timeout", "3000 ms",
           "with `wait_ready`, an app silent this long counts as ready (with a warning)",
           convert=parse_ms,
           flag=Flag(("--listen-timeout",), "ms to wait for readiness before going on")),
    Option("listen", "none",
           'addresses the daemon binds and hands to every instance (`"127.0.0.1:8000"`, '
           '`":8000"`, `"[::1]:8000"`, `"unix:/path.sock"`): fds from 3, `LISTEN_FDS`',
           convert=values.listen,
           flag=Flag(("--listen",), "address(es) the daemon holds for the app", "list")),
    Option("shutdown_with_message", "false", "not supported: apps are stopped with `kill_signal`"),
)

BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}

# Accepted so pm2 files load unchanged, but they mean nothing here: Node-only, PM2+/APM,
# Windows-only, or filled in by pm2 itself.
IGNORED_OPTIONS = frozenset({
    "vizion", "pmx", "automation", "source_map_support", "disable_source_map_support", "trace",
    "disable_trace", "v8", "event_loop_inspector", "deep_monitoring", "io", "post_update",
    "install_url", "username", "windowsHide", "kill_retry_time", "force",
    "execute_command", "write", "watch_options",
})


def camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(p[:1].upper() + p[1:] if len(p) > 1 else p for p in rest)


def _build_lookup() -> dict[str, str]:
    # pm2's validator accepts the camelCase spelling of every key.
    lookup: dict[str, str] = {}
    for option in OPTIONS:
        for key in (option.name, *option.aliases):
            lookup.setdefault(key, option.name)
            lookup.setdefault(camel(key), option.name)
    for key in IGNORED_OPTIONS:
        lookup.setdefault(key, key)
        lookup.setdefault(camel(key), key)
    return lookup


#: Every accepted spelling -> its canonical option (ignored options map to themselves).
LOOKUP: Mapping[str, str] = _build_lookup()
KNOWN_OPTIONS = frozenset(LOOKUP)

#: Other tools' names (lower case) -> (the option, how that tool names and means it).
FOREIGN: Mapping[str, tuple[Option, Foreign]] = {
    f.name.lower(): (o, f) for o in OPTIONS for f in o.foreign
}


def unknown_key_message(key: str) -> str:
    """The warning for a key that is no option: another tool's name for one, or a close spelling."""
    found = FOREIGN.get(key.lower())
    if found is not None:
        option, foreign = found
        note = f"; {foreign.note}" if foreign.note else ""
        return (f"unknown option {show(key)}: did you mean {option.name}? "
                f"({foreign.tool}'s {foreign.name}){note}")
    import difflib

    close = difflib.get_close_matches(key, sorted(KNOWN_OPTIONS), n=1, cutoff=0.75)
    guess = f' (did you mean "{close[0]}"?)' if close else ""
    return f"unknown option {show(key)}{guess}"


def is_unset(option: Option, value: Any) -> bool:
    """pm2 skips null everywhere, and any JavaScript-falsy value of an optional option."""
    if value is None:
        return True
    if not option.optional:
        return False
    return value is False or value == "" or (type(value) in (int, float) and value == 0)


def cli_flags() -> tuple[Option, ...]:
    """The options `pyvm2 start` has a flag for, in table order."""
    return tuple(o for o in OPTIONS if o.flag is not None)


def readme_table() -> str:
    """The README's "Supported options" table, one line per row."""
    out = ["| option (aliases) | `start` flag | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS:
        names = f"`{o.name}`"
        if o.aliases:
            names += " (" + ", ".join(f"`{a}`" for a in o.aliases) + ")"
        flag = ""
        if o.flag is not None:
            flag = ", ".join(f"`{d}`" for d in o.flag.decls)
        out.append(f"| {names} | {flag} | {o.default} | {o.meaning} |")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--readme-table"]:
        sys.stdout.write(readme_table())
        return 0
    print("usage: python -m pyvm2.options --readme-table", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
