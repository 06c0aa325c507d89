"""pm2's smaller commands: scale, prettylist, id, env, cleardump, init, report, completion, the
list's --sort and -m forms, the dashboard aliases, the version flag, and the pm2 commands pyvm2
answers with what to use instead."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer

from pyvm2 import __version__, cli
from pyvm2.cli.commands import app, monit, update
from pyvm2.cli.quick import _client
from pyvm2.errors import NotFound, Pyvm2Error, UsageError


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _global(
    version: Annotated[bool, typer.Option("--version", "-v", "-V", is_eager=True, callback=_version,
                                          help="print pyvm2's version and exit")] = False,
    silent: Annotated[bool, typer.Option("--silent", "-s", help="print nothing but errors")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="no colours (also NO_COLOR=1)")] = False,
) -> None:
    """A process manager that speaks pm2's language."""


# ---- the list, sorted or minimal -----------------------------------------------------------------

#: --sort FIELD -> how to read it from a jlist entry (pm2's fields, plus restarts and mem).
SORT_FIELDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "name": lambda p: str(p.get("name") or ""),
    "namespace": lambda p: str(p.get("pm2_env", {}).get("namespace") or ""),
    "id": lambda p: p.get("pm_id") or 0,
    "pid": lambda p: p.get("pid") or 0,
    "uptime": lambda p: p.get("pm2_env", {}).get("pm_uptime") or 0,
    "status": lambda p: str(p.get("pm2_env", {}).get("status") or ""),
    "cpu": lambda p: (p.get("monit") or {}).get("cpu") or 0,
    "memory": lambda p: (p.get("monit") or {}).get("memory") or 0,
    "restarts": lambda p: p.get("pm2_env", {}).get("restart_time") or 0,
}
SORT_ALIASES = {"mem": "memory", "restart": "restarts", "restart_time": "restarts", "pm_id": "id"}


def sort_procs(procs: Sequence[Mapping[str, Any]], spec: str) -> list[Mapping[str, Any]]:
    """`--sort name`, `--sort cpu:desc`: pm2's order, ties broken by name then id."""
    field, _, order = spec.partition(":")
    field = SORT_ALIASES.get(field.strip().lower(), field.strip().lower())
    order = order.strip().lower() or "asc"
    if field not in SORT_FIELDS or order not in ("asc", "desc"):
        raise UsageError(f"cannot sort by {spec!r}",
                         f"--sort FIELD[:asc|desc] with FIELD one of {', '.join(SORT_FIELDS)}",
                         code=2)
    key = SORT_FIELDS[field]
    by_name = sorted(procs, key=lambda p: (str(p.get("name") or ""), p.get("pm_id") or 0))
    return sorted(by_name, key=key, reverse=order == "desc")


def render_mini(procs: Sequence[Mapping[str, Any]], now_ms: float | None = None) -> str:
    """pm2's `ls -m`: one block of `key : value` lines per process."""
    from pyvm2.cli.render import format_memory, format_uptime

    now = time.time() * 1000 if now_ms is None else now_ms
    out = []
    for p in procs:
        env = p.get("pm2_env", {})
        status = env.get("status")
        up = env.get("pm_uptime")
        uptime = format_uptime(now - up) if up and status == "online" else "0"
        memory = (p.get("monit") or {}).get("memory")
        out += [
            f"+--- {p.get('name') or os.path.basename(str(env.get('pm_exec_path') or ''))}",
            f"namespace : {env.get('namespace')}",
            f"version : {env.get('version', 'N/A')}",
            f"pid : {p.get('pid')}",
            f"pm2 id : {p.get('pm_id')}",
            f"status : {status}",
            f"mode : {str(env.get('exec_mode') or 'fork_mode').split('_mode')[0]}",
            f"restarted : {env.get('restart_time') or 0}",
            f"uptime : {uptime}",
            f"memory usage : {format_memory(memory) + ' ' if memory is not None else ''}",
            f"error log : {env.get('pm_err_log_path')}",
            f"watching : {'yes' if env.get('watch') else 'no'}",
            f"PID file : {env.get('pm_pid_path')}",
            "",
        ]
    return "\n".join(out)


def show_list(sort: str | None, mini: bool) -> None:
    from pyvm2.cli.quick import print_table

    procs: list[dict] = _client().call("list")
    ordered: list[Any] = sort_procs(procs, sort) if sort else procs
    if mini:
        if not sort:
            ordered = sort_procs(procs, "name")
        print(render_mini(ordered), end="")
        return
    print_table(ordered, keep_order=bool(sort))


# ---- scale ---------------------------------------------------------------------------------------

_SCALE_HINT = "pyvm2 scale NAME 4 (4 instances), +2 (two more) or -1 (one fewer)"


def parse_scale(number: str) -> tuple[int, bool]:
    """`4` -> (4, False); `+2` -> (2, True); `-1` -> (-1, True). UsageError for anything else,
    and for an absolute number below 1."""
    import re

    m = re.fullmatch(r"\s*([+-]?)(\d{1,6})\s*", number)
    if m is None:
        raise UsageError(f"scale: {number!r} is not a number of instances", _SCALE_HINT, code=2)
    sign, digits = m.groups()
    if sign:
        return int(sign + digits), True
    if int(digits) < 1:
        raise UsageError(f"scale: an app needs at least 1 instance, got {number.strip()}",
                         "to stop it: pyvm2 stop NAME; to remove it: pyvm2 delete NAME", code=2)
    return int(digits), False


@app.command(context_settings={"ignore_unknown_options": True},
             help="Grow or shrink an app to N instances, or by +N / -N (the highest instances "
                  "go; new ones copy the app's definition and environment).")
def scale(name: Annotated[str, typer.Argument(help="app name (or the id of one of its processes)")],
          number: Annotated[str, typer.Argument(help="N, +N or -N")]) -> None:
    from pyvm2.cli.commands import _exit_if_errored
    from pyvm2.cli.quick import print_table

    count, relative = parse_scale(number)
    res = _client().call("scale", {"name": name, "count": count, "relative": relative},
                         timeout=None)
    procs: list[dict] = res["list"]
    actions: list[dict] = res["actions"]
    if actions:
        name = actions[0]["name"]
    elif name.isdigit() and not any(p.get("name") == name for p in procs):
        name = next((p["name"] for p in procs if str(p.get("pm_id")) == name), name)
    now = sum(1 for p in procs if p.get("name") == name)
    added = [a for a in actions if a["action"] != "deleted"]
    if not actions:
        cli.info(f"{name} already has {now} instance{'s' if now != 1 else ''}: nothing to do")
    else:
        before = now - len(added) + (len(actions) - len(added))
        way = "up" if added else "down"
        cli.info(f"Scaling {way} application {name}: {before} -> {now} instances")
        for a in actions:
            cli.info(f"[{a['name']}]({a['pm_id']}) {a['action']}")
    print_table(procs)
    _exit_if_errored(procs, {a["pm_id"] for a in added})


# ---- pm2's inspection commands -----------------------------------------------------------------

@app.command(help="The process list as Node's util.inspect prints it (pm2's prettylist).")
def prettylist() -> None:
    from pyvm2.cli.jsinspect import inspect

    text = inspect(_client().call("list"))
    sys.stdout.write(text + ("\n" if sys.stdout.isatty() else ""))
    sys.stdout.flush()


@app.command("id", help="The ids of the processes with this name, as pm2 prints them: [ 0, 1 ].")
def id_(name: Annotated[str, typer.Argument(help="app name")]) -> None:
    from pyvm2.cli.jsinspect import inspect

    ids = [p["pm_id"] for p in _client().call("list") if p.get("name") == name]
    print(inspect(ids))


#: pm2_env keys that are pyvm2's bookkeeping, not the app's environment (pm2's safeExtend list).
_INTERNAL = frozenset({
    "name", "exec_mode", "env", "args", "pm_cwd", "exec_interpreter", "pm_exec_path", "node_args",
    "pm_out_log_path", "pm_err_log_path", "pm_log_path", "pm_pid_path", "pm_id", "status",
    "pm_uptime", "created_at", "username", "merge_logs", "unstable_restarts", "restart_time",
    "axm_options", "watch", "filter_env", "instances", "autostart", "autorestart",
    "stop_exit_codes", "treekill", "exit_code", "watching", "status_reason", "next_restart_at",
    "last_restart_reason", "source", "warnings", "desired", "instance", "version",
})


def app_environment(proc: Mapping[str, Any]) -> dict[str, str] | None:
    """The variables the app runs with: from the daemon when it tells them, else read from
    /proc/PID/environ of the running process; None when neither is available."""
    env = proc.get("pm2_env", {}).get("env")
    if isinstance(env, dict) and env:
        return {str(k): str(v) for k, v in env.items()}
    pid = proc.get("pid")
    if not pid:
        return None
    try:
        with open(f"/proc/{int(pid)}/environ", "rb") as f:
            raw = f.read()
    except (OSError, ValueError):
        return None
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


@app.command(help="The environment of one process (by id, or name), one `KEY: value` per line.")
def env(target: Annotated[str, typer.Argument(help="process id (or name)")]) -> None:
    procs = _client().call("list")
    found = [p for p in procs if str(p.get("pm_id")) == target.strip()] or \
        [p for p in procs if p.get("name") == target]
    if not found:
        raise NotFound(f"process {target} not found", "see the ids with: pyvm2 list")
    color = cli.use_color()
    for i, p in enumerate(found):
        if i:
            print()
        variables = app_environment(p)
        if variables is None:
            raise Pyvm2Error(f"{p['name']} ({p['pm_id']}) is not running, so its environment "
                             "cannot be read", f"start it first: pyvm2 start {p['name']}")
        rest = {k: v for k, v in p.get("pm2_env", {}).items()
                if k not in _INTERNAL and not isinstance(v, (dict, list)) and v is not None}
        for key, value in {**rest, **variables}.items():
            shown = f"\x1b[32m{value}\x1b[0m" if color else str(value)
            print(f"{key}: {shown}")


# ---- saved list --------------------------------------------------------------------------------

def empty_dump() -> bytes:
    """An empty saved list in the daemon's dump format (journal.pack([], 0))."""
    import json

    return json.dumps({"format": 1, "next_id": 0, "envs": {}, "procs": []},
                      separators=(",", ":")).encode()


@app.command(help="Empty the saved list (the previous one is kept as dump.json.bak).")
def cleardump() -> None:
    from pyvm2.paths import Home

    home = Home.from_env()
    home.ensure()
    path = str(home.dump)
    if os.path.exists(path):
        os.replace(path, path + ".bak")
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(empty_dump())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    cli.info(f"Successfully created {path}")


# ---- dashboard aliases and renamed pm2 commands --------------------------------------------------

for _alias in ("dashboard", "dash", "imonit"):
    app.command(_alias, hidden=True)(monit)
app.command("updatePM2", hidden=True)(update)


# ---- init / ecosystem ----------------------------------------------------------------------------

SAMPLE_NAME = "ecosystem.config.json5"

SAMPLE_SIMPLE = """\
// pyvm2 ecosystem file (JSON5: comments, trailing commas and unquoted keys are fine).
// Start it with: pyvm2 start ecosystem.config.json5   (pm2 reads this file too)
{
  apps: [
    {
      name: "app",
      script: "app.py",
    },
  ],
}
"""

SAMPLE_FULL = """\
// pyvm2 ecosystem file (JSON5: comments, trailing commas and unquoted keys are fine).
//   start every app:            pyvm2 start ecosystem.config.json5
//   with env_production added:  pyvm2 start ecosystem.config.json5 --env production
//   apply changes:              pyvm2 restart ecosystem.config.json5
// pm2 reads this file too. Relative paths count from this file's folder.
{
  apps: [
    {
      name: "app",
      script: "app.py",            // the interpreter follows the extension: .py python3, .php php,
                                   // .js node, .sh bash; or set interpreter: "python3.12"
      // args: "--port 8000",
      // cwd: ".",
      // instances: 1,             // N copies (each gets NODE_APP_INSTANCE=0..N-1)
      // autorestart: true,
      // max_restarts: 16,         // unstable restarts (up < min_uptime) before "errored"
      // min_uptime: 1000,         // ms
      // restart_delay: 0,         // ms before an automatic restart
      // max_memory_restart: "300M",
      // cron_restart: "0 4 * * *",
      // watch: false,             // true, or the paths to watch: ["src", "config"]
      // ignore_watch: ["logs", "*.pyc", "__pycache__"],
      // kill_signal: "SIGINT",
      // kill_timeout: 1600,       // ms before SIGKILL
      // time: true,               // prefix each log line with the date
      // out_file: "logs/app-out.log",
      // error_file: "logs/app-error.log",
      env: {
        PYTHONUNBUFFERED: "1",
      },
      env_production: {
        APP_ENV: "production",
      },
    },
  ],
}
"""


@app.command("init", help="Write a commented sample ecosystem file (never overwrites one).")
def init(
    mode: Annotated[str | None, typer.Argument(help="`simple` for a minimal file")] = None,
) -> None:
    path = os.path.abspath(SAMPLE_NAME)
    text = SAMPLE_SIMPLE if mode == "simple" else SAMPLE_FULL
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} already exists; it was left as it is",
                         "remove or rename it first, or edit it") from None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    cli.info(f"File {path} generated")
    cli.info(f"start it with: pyvm2 start {SAMPLE_NAME}")


app.command("ecosystem", hidden=True)(init)


# ---- report ------------------------------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _os_name() -> str:
    import platform

    pretty = None
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip('"')
    u = platform.uname()
    return f"{u.system} {u.release} {u.machine}" + (f", {pretty}" if pretty else "")


def _subreaper() -> str:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        if libc.prctl(37, ctypes.byref(value), 0, 0, 0) == 0:  # PR_GET_CHILD_SUBREAPER
            return "available (prctl PR_SET_CHILD_SUBREAPER)"
        return f"not available (errno {ctypes.get_errno()})"
    except (OSError, AttributeError):
        return "not available"


def _cgroups() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        own = (_read("/proc/self/cgroup") or "").splitlines()
        path = own[0].split("::", 1)[1] if own and "::" in own[0] else "?"
        writable = os.access(f"/sys/fs/cgroup{path}", os.W_OK)
        return f"v2, this process in {path} ({'writable' if writable else 'read-only'})"
    if os.path.isdir("/sys/fs/cgroup/memory"):
        return "v1"
    return "not mounted"


def _container() -> str:
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    env = _read("/proc/1/environ") or ""
    if "container=" in env:
        return env.split("container=", 1)[1].split("\0", 1)[0]
    return "none detected"


def report_lines() -> list[str]:
    """What a bug report needs: versions, home, daemon state, limits, the daemon's last lines."""
    import platform
    import resource
    import shutil

    from pyvm2.client import Client, _tail, daemon_pid

    client = Client()
    home = client.home
    lines = ["pyvm2 report (paste it into the bug report)", "",
             f"date            : {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
             f"pyvm2           : {__version__} ({os.path.dirname(os.path.dirname(__file__))})",
             f"python          : {platform.python_version()} ({sys.executable})",
             f"os              : {_os_name()}",
             f"container       : {_container()}",
             f"user            : {_user()} (uid {os.getuid()})",
             f"PYVM2_HOME      : {home.root}",
             f"config.json     : {_settings(str(home.config))}"]
    try:
        client.connect(autostart=False, check_version=False)
        ping = client.call("ping", timeout=10)
        procs = client.call("list", timeout=10)
        by_status: dict[str, int] = {}
        for p in procs:
            s = p.get("pm2_env", {}).get("status") or "?"
            by_status[s] = by_status.get(s, 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) or "none"
        mismatch = "" if client.daemon_version == __version__ else \
            f"  (this command is {__version__}: run pyvm2 update)"
        lines += [f"daemon          : running, pid {ping.get('pid')}, version {client.daemon_version}, "
                  f"up {int(ping.get('uptime_ms', 0)) // 1000}s{mismatch}",
                  f"apps            : {len(procs)} ({counts})"]
        for p in procs[:50]:
            env = p.get("pm2_env", {})
            reason = f" - {env['status_reason']}" if env.get("status_reason") else ""
            lines.append(f"  {p.get('pm_id')}|{p.get('name')}: {env.get('status')}, "
                         f"{env.get('restart_time', 0)} restart(s), "
                         f"{env.get('exec_interpreter')} {env.get('pm_exec_path')}{reason}")
    except Pyvm2Error as e:
        pid = daemon_pid(home)
        lines.append(f"daemon          : not running ({e.message})"
                     + (f"; pid file says {pid}" if pid else ""))
    finally:
        client.close()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    lines += ["", "limits",
              f"open files      : {_limit(soft)} (hard {_limit(hard)})",
              f"processes       : {_limit(nproc[0])} (hard {_limit(nproc[1])})",
              f"inotify watches : {_read('/proc/sys/fs/inotify/max_user_watches') or '?'} "
              f"(instances {_read('/proc/sys/fs/inotify/max_user_instances') or '?'})",
              f"pid_max         : {_read('/proc/sys/kernel/pid_max') or '?'}",
              f"cgroups         : {_cgroups()}",
              f"subreaper       : {_subreaper()}",
              "", "interpreters"]
    for name in ("python3", "php", "node", "bash"):
        lines.append(f"{name:<16}: {shutil.which(name) or 'not found'}")
    lines += ["", f"daemon log ({home.log}), last lines:"]
    lines += [f"  {ln}" for ln in _tail(home.log, 20).splitlines()]
    return lines


def _settings(path: str) -> str:
    text = _read(path)
    if text is None:
        return "none (defaults)"
    return " ".join(text.split())[:200]


def _limit(n: int) -> str:
    import resource

    return "unlimited" if n == resource.RLIM_INFINITY else str(n)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return "?"


@app.command(help="What a bug report needs: versions, daemon state, limits, recent daemon log.")
def report() -> None:
    print("\n".join(report_lines()))


# ---- shell completion ----------------------------------------------------------------------------

COMPLETE_VAR = "_PYVM2_COMPLETE"


@app.command(help="Print a completion script: pyvm2 completion bash >> ~/.bashrc (or zsh, fish).")
def completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish")] = "bash") -> None:
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise UsageError(f"no completion for {shell!r}", "pyvm2 completion bash|zsh|fish", code=2)
    print(get_completion_script(prog_name="pyvm2", complete_var=COMPLETE_VAR, shell=shell))


def complete_targets(ctx: Any, param: Any, incomplete: str) -> list[str]:
    """App names, ids and `all`, from a running daemon (never starting one)."""
    from pyvm2.client import Client

    client = Client()
    try:
        client.connect(autostart=False, check_version=False)
        procs = client.call("list", timeout=2)
    except Pyvm2Error:
        return []
    finally:
        client.close()
    words = ["all"] + sorted({p["name"] for p in procs}) + [str(p["pm_id"]) for p in procs]
    return [w for w in dict.fromkeys(words) if w.startswith(incomplete)]


def enable_target_completion(group: Any) -> None:
    """Complete the targets of every command that takes names or ids."""
    from typer._completion_classes import completion_init

    completion_init()
    for command in group.commands.values():
        for param in command.params:
            if param.param_type_name == "argument" and param.name in ("targets", "target", "name"):
                param._custom_shell_complete = complete_targets
