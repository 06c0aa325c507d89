"""pyvm2's commands, with pm2's names, flags and exit codes."""

from __future__ import annotations

import functools
import inspect
import os
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from pyvm2 import cli
from pyvm2.cli import quick
from pyvm2.cli.quick import _client, _width, print_table
from pyvm2.errors import ConfigError, DaemonNotRunning, NotFound, Pyvm2Error, UsageError
from pyvm2.options import cli_flags
from pyvm2.procfs import STATE, stat_fields

if TYPE_CHECKING:
    from pyvm2.client import Client
    from pyvm2.spec import AppSpec
    from pyvm2.startup import Unit

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
                  help="A process manager that speaks pm2's language.")

Targets = Annotated[list[str] | None, typer.Argument(help="names, ids, namespaces, `all`, or an ecosystem file")]


def _base_env() -> dict[str, str]:
    return dict(os.environ)


def _split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.replace(",", " ").split() if x)
    return out


def _file_targets(targets: list[str]) -> tuple[list[str], Any]:
    """Replace an ecosystem file among the targets by its app names."""
    from pyvm2 import ecosystem

    names: list[str] = []
    loaded = None
    procs: list[dict] | None = None
    for t in targets:
        if t == "-" or ecosystem.is_ecosystem_file(t) and os.path.isfile(t):
            loaded = ecosystem.loads(_stdin_text()) if t == "-" else ecosystem.load(t, base_env=_base_env())
            for w in loaded.warnings:
                cli.warn(w)
            names.extend(a.name for a in loaded.apps)
        elif _is_regex(t):
            if procs is None:
                procs = _client().call("list")
            names.extend(dict.fromkeys(p["name"] for p in _regex_match(procs, t)))
        elif os.path.isfile(t) and not t.isdigit():
            # pm2: a script's path stands for the apps running it (`pyvm2 stop echo.py`)
            if procs is None:
                procs = _client().call("list")
            path = os.path.abspath(t)
            by_script = [p["name"] for p in procs if p.get("pm2_env", {}).get("pm_exec_path") == path]
            names.extend(dict.fromkeys(by_script) if by_script else [t])
        else:
            names.append(t)
    return names, loaded


def _is_regex(t: str) -> bool:
    return len(t) > 2 and t.startswith("/") and t.endswith("/")


def _regex_match(procs: list[dict], t: str) -> list[dict]:
    """pm2's `/regex/` target: the processes whose name it matches (searched, not anchored)."""
    import re

    try:
        pattern = re.compile(t[1:-1])
    except re.error as e:
        raise UsageError(f"{t}: not a regular expression ({e})", "e.g. pyvm2 stop '/^api-/'", code=2) from None
    matched = [p for p in procs if pattern.search(p["name"])]
    if not matched:
        raise NotFound(f"no process name matches {t}", "see the names with: pyvm2 list")
    return matched


def _report(actions: list[dict]) -> None:
    for a in actions:
        if a.get("pm_id") is None:
            cli.warn(f"[{a['name']}] {a['action']}")
        else:
            cli.info(f"[{a['name']}]({a['pm_id']}) {a['action']}")


def _exit_if_errored(procs: list[dict], ids: set[int], wait: bool = False) -> None:
    """Exit 1 if one of the apps is errored (it could not start, or gave up); with `wait`,
    also if one crashed: it waits to restart, or stopped by itself, after a failing exit."""
    bad = [p for p in procs if p.get("pm_id") in ids and _failed(p.get("pm2_env", {}), wait)]
    if bad:
        p = bad[0]
        env = p["pm2_env"]
        what = "is errored" if env.get("status") == "errored" else f"crashed ({env.get('status')})"
        raise Pyvm2Error(f"{p['name']} ({p['pm_id']}) {what}: {env.get('status_reason')}",
                         f"see its output with: pyvm2 logs {p['name']} --nostream")


def _failed(env: dict, wait: bool) -> bool:
    status = env.get("status")
    if status == "errored":
        return True
    if not wait or status not in ("waiting restart", "stopped") or env.get("desired") != "running":
        return False
    reason = str(env.get("status_reason") or "")
    if "stop_exit_codes" in reason:
        return False   # an exit the app's definition lists as its normal end
    return env.get("exit_code") not in (0, None) or reason.startswith("killed by")


_WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="return once each app's outcome is known (online for min(min_uptime, 1 s), "
                   "or crashed: then exit 1 with the reason), not as soon as it runs")]


def _with_option_flags(func: Callable[..., None]) -> Callable[..., None]:
    """`func`'s own parameters, plus one per option row that has a flag (pyvm2.options)."""
    hints = get_type_hints(func, include_extras=True)
    params = [p.replace(annotation=hints[p.name]) for p in inspect.signature(func).parameters.values()
              if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for option in cli_flags():
        flag = option.flag
        assert flag is not None
        info = typer.Option(*flag.decls, help=flag.help or None)
        kind: Any = {"switch": bool, "bool": bool | None, "list": list[str] | None}.get(
            flag.kind, str | None)
        params.append(inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY,
                                        default=False if flag.kind == "switch" else None,
                                        annotation=Annotated[kind, info]))

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        func(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _option_flags(given: dict[str, Any]) -> dict[str, Any]:
    """The options set by flags, as an ecosystem file would write them."""
    from pyvm2.units import UnitError

    out: dict[str, Any] = {}
    for option in cli_flags():
        flag = option.flag
        assert flag is not None
        value = given.get(option.name)
        if value is None or value is False and flag.kind == "switch":
            continue
        if flag.kind == "list":
            value = _split_list(value) or []
        if flag.convert is not None:
            try:
                value = flag.convert(value)
            except UnitError as e:
                raise ConfigError(str(e), e.hint, path=flag.decls[0]) from None
        if value == []:
            continue
        out[option.name] = value
    return out


@app.command(help="Start an ecosystem file, a script, or stopped apps by name/id.")
@_with_option_flags
def start(
    targets: Targets = None,
    env: Annotated[str | None, typer.Option("--env", help="use env_<NAME> from the ecosystem file")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="only these apps of the file (comma separated)")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="start the script again even if its app runs: as pyvm2 runs one app per name, the copies join it as more instances")] = False,
    wait: _WaitOpt = False,
    **options: Any,
) -> None:
    from pyvm2 import ecosystem
    from pyvm2 import spec as specmod

    targets = list(targets or [])
    if not targets:
        # pm2 looks for ecosystem.config.js; `pyvm2 init` writes ecosystem.config.json5
        default = next((f for f in ("ecosystem.config.js", "ecosystem.config.json5") if os.path.exists(f)), None)
        if default is None:
            raise UsageError("nothing to start", "pyvm2 start ecosystem.json | pyvm2 start app.py --name app | "
                             "pyvm2 init (writes a sample ecosystem file)")
        targets = [default]
    flags = _option_flags(options)
    cwd = flags.pop("cwd", None)
    base_env = _base_env()
    client: Client | None = None

    first = targets[0]
    if first == "-" or ecosystem.is_ecosystem_file(first) and (os.path.exists(first) or len(targets) == 1):
        apps = []
        for path in targets:
            if path == "-":
                loaded = ecosystem.loads(_stdin_text(), env_name=env, only=_split_list(only),
                                         cwd_override=cwd, base_env=base_env)
            else:
                loaded = ecosystem.load(path, env_name=env, only=_split_list(only), cwd_override=cwd,
                                        base_env=base_env)
            for w in loaded.warnings:
                cli.warn(w)
            apps.extend(loaded.apps)
        if flags:
            apps = [_apply_flags(a, flags) for a in apps]
        client = _client()
        res = client.call("start", {"apps": [a.to_dict() for a in apps], "base_env": base_env,
                                    "from_file": True, "wait": wait}, timeout=None)
    elif _looks_like_script(first) and (force or os.path.exists(os.path.expanduser(first))
                                        or not _names_apps(client := _client(), targets)):
        if env:
            raise UsageError("--env needs an ecosystem file",
                             "put env_<NAME> in an ecosystem file, or set variables in the shell")
        missing = [t for t in targets[1:] if not _looks_like_script(t)]
        if missing:
            raise UsageError(f"{missing[0]}: no such script; start takes scripts, and a script's "
                             "own arguments go after --",
                             f"pyvm2 start {first} -- {' '.join(targets[1:])}")
        if len(targets) > 1 and flags.get("name"):
            raise UsageError("--name names one app, but several scripts were given",
                             "start them one at a time, each with its --name")
        specs = []
        for target in targets:
            raw = dict(flags)
            script = os.path.expanduser(target)
            if os.path.exists(script):
                script = os.path.abspath(script)
            raw["script"] = script
            if cwd is not None:
                raw["cwd"] = cwd
            if cli.SCRIPT_ARGS is not None:
                raw["args"] = list(cli.SCRIPT_ARGS)
            warnings: list[str] = []
            specs.append(specmod.from_options(raw, base_dir=os.getcwd(), origin="command line",
                                              base_env=base_env, warn=warnings.append, cli_script=True))
            for w in warnings:
                cli.warn(w)
        client = client or _client()
        if force:
            specs = _with_copies(specs, client.call("list"))
        res = client.call("start", {"apps": [spec.to_dict() for spec in specs], "base_env": base_env,
                                    "from_file": force, "wait": wait}, timeout=None)
        same = [] if force else [a for a in res["actions"] if a["action"] == "unchanged"]
        if same:
            again = client.call("restart", {"targets": [str(a["pm_id"]) for a in same],
                                            "wait": wait}, timeout=None)
            for a in same:
                a["action"] = "restarted"
            res["list"] = again["list"]
    else:
        client = client or _client()
        try:
            res = client.call("start", {"targets": targets, "wait": wait}, timeout=None)
        except NotFound:
            raise NotFound(f"{first}: no such file, and no app of that name",
                           "give a script path (./worker.py), an ecosystem file, or a name from pyvm2 list") from None
    _report(res["actions"])
    print_table(res["list"])
    _exit_if_errored(res["list"], {a["pm_id"] for a in res["actions"]}, wait)


def _names_apps(client: Client, targets: list[str]) -> bool:
    """Whether every target is the name or id of a known app: pm2 acts on the app then, even
    when a command of that name is on PATH (`start echo` restarts the app echo)."""
    procs = client.call("list")
    known = {p.get("name") for p in procs} | {str(p.get("pm_id")) for p in procs}
    return all(t in known for t in targets)


def _with_copies(specs: list[AppSpec], procs: list[dict]) -> list[AppSpec]:
    """pm2's `start script -f` starts one more copy of an app that already runs; here the copies
    are added to the app of that name as more instances (in its exec mode), and the running ones
    are left alone."""
    import dataclasses

    count: dict[str, int] = {}
    first: dict[str, dict] = {}
    for p in procs:
        name = p.get("name", "")
        count[name] = count.get(name, 0) + 1
        first.setdefault(name, p.get("pm2_env", {}))
    out = []
    for s in specs:
        if s.name in count:
            env = first[s.name]
            s = dataclasses.replace(
                s, instances=s.instances + count[s.name],
                exec_mode="cluster" if env.get("exec_mode") == "cluster_mode" else "fork",
                merge_logs=bool(env.get("merge_logs", s.merge_logs)))
        out.append(s)
    return out


def _stdin_text() -> str:
    import sys

    if sys.stdin.isatty():
        raise UsageError("`-` reads an ecosystem (JSON or YAML) from standard input, which is a terminal",
                         "cat ecosystem.json | pyvm2 start -")
    return sys.stdin.read()


def _looks_like_script(t: str) -> bool:
    return os.path.exists(os.path.expanduser(t)) or "/" in t or "." in os.path.basename(t) \
        or " " in t or shutil.which(t) is not None


def _apply_flags(spec: AppSpec, flags: dict[str, Any]) -> AppSpec:
    """CLI flags given with an ecosystem file override each app's value (pm2's rule)."""
    import dataclasses

    from pyvm2 import spec as specmod
    from pyvm2.convert import to_options

    raw = to_options(spec)
    if flags.get("watch") and spec.watch:
        flags = {k: v for k, v in flags.items() if k != "watch"}
    raw.update(flags)
    if "args" in raw and not raw["args"]:
        raw.pop("args")
    rebuilt = specmod.from_options(raw, base_dir=spec.cwd, origin=spec.source or "command line",
                                   base_env=_base_env(), warn=lambda _m: None)
    return dataclasses.replace(rebuilt, source=spec.source, env=spec.env)


def _action(cmd: str, targets: list[str] | None, extra: dict | None = None) -> dict:
    if not targets:
        raise UsageError(f"{cmd} needs a target", f"pyvm2 {cmd} <name|id|namespace|all|ecosystem.json>")
    names, _ = _file_targets(targets)
    client = _client()
    return client.call(cmd, {"targets": names, **(extra or {})}, timeout=None)


@app.command(help="Stop apps (the whole process tree); they stay in the list.")
def stop(
    targets: Targets = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="also turn watching off for good (a plain stop pauses it until the "
                        "next start)")] = False,
) -> None:
    res = _action("stop", targets, {"unwatch": True} if watch else None)
    cli.info(f"Applying action stop on app [{' '.join(targets or [])}](ids: {res['ids']})")
    print_table(res["list"])


@app.command(help="Restart apps; with an ecosystem file, apply its current definition.")
def restart(
    targets: Targets = None,
    env: Annotated[str | None, typer.Option("--env", help="use env_<NAME> from the ecosystem file")] = None,
    only: Annotated[list[str] | None, typer.Option("--only")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="turn watching on or off (toggles, as pm2)")] = False,
    wait: _WaitOpt = False,
    update_env: Annotated[bool, typer.Option("--update-env", "-a", help="give the apps the current environment (else they keep the one they were started with)")] = False,
) -> None:
    from pyvm2 import ecosystem

    targets = list(targets or [])
    if targets and ecosystem.is_ecosystem_file(targets[0]):
        base_env = _base_env()
        loaded = ecosystem.load(targets[0], env_name=env, only=_split_list(only), base_env=base_env)
        for w in loaded.warnings:
            cli.warn(w)
        res = _client().call("restart", {"apps": [a.to_dict() for a in loaded.apps],
                                          "base_env": base_env, "wait": wait}, timeout=None)
    else:
        if env:
            raise UsageError("--env needs an ecosystem file", "pyvm2 restart ecosystem.json --env production")
        extra: dict[str, Any] = {"toggle_watch": watch, "update_env": update_env, "wait": wait}
        if update_env:
            extra["base_env"] = _base_env()
        res = _action("restart", targets, extra)
    cli.info(f"Applying action restart on app [{' '.join(targets)}](ids: {res.get('ids')})")
    if not update_env and not (targets and ecosystem.is_ecosystem_file(targets[0])):
        cli.info("Use --update-env to update environment variables")
    print_table(res["list"])
    _exit_if_errored(res["list"], set(res.get("ids") or []), wait)


def _file_apps(path: str, env: str | None, only: list[str] | None) -> tuple[list[dict], dict]:
    from pyvm2 import ecosystem

    base_env = _base_env()
    loaded = ecosystem.load(path, env_name=env, only=_split_list(only), base_env=base_env)
    for w in loaded.warnings:
        cli.warn(w)
    return [a.to_dict() for a in loaded.apps], base_env


@app.command(help="Replace running apps one instance at a time with no downtime: start the "
                  "new process, wait until it is ready, then stop the old one.")
def reload(
    targets: Targets = None,
    env: Annotated[str | None, typer.Option("--env", help="use env_<NAME> from the ecosystem file")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="only these apps of the file")] = None,
    update_env: Annotated[bool, typer.Option("--update-env", "-a", help="give the apps the current environment (else they keep the one they were started with)")] = False,
) -> None:
    from pyvm2 import ecosystem

    targets = list(targets or [])
    if targets and ecosystem.is_ecosystem_file(targets[0]):
        apps, base_env = _file_apps(targets[0], env, only)
        res = _client().call("reload", {"apps": apps, "base_env": base_env}, timeout=None)
    else:
        if env:
            raise UsageError("--env needs an ecosystem file", "pyvm2 reload ecosystem.json --env production")
        extra: dict[str, Any] = {"update_env": update_env}
        if update_env:
            extra["base_env"] = _base_env()
        res = _action("reload", targets, extra)
    cli.info(f"Applying action reload on app [{' '.join(targets)}](ids: {res.get('ids')})")
    if not update_env and not (targets and ecosystem.is_ecosystem_file(targets[0])):
        cli.info("Use --update-env to update environment variables")
    print_table(res["list"])
    _exit_if_errored(res["list"], set(res.get("ids") or []))


app.command("gracefulReload", hidden=True)(reload)  # pm2's older name


def _start_or(action: str, file: str, env: str | None, only: list[str] | None) -> None:
    from pyvm2 import ecosystem

    if not ecosystem.is_ecosystem_file(file):
        raise UsageError(f"{file} is not an ecosystem file",
                         f"pyvm2 {action} ecosystem.config.js (or .json, .yaml)")
    apps, base_env = _file_apps(file, env, only)
    cmd = "reload" if action == "startOrReload" else "restart"
    res = _client().call(cmd, {"apps": apps, "base_env": base_env}, timeout=None)
    cli.info(f"Applying action {cmd} on app [{file}](ids: {res.get('ids')})")
    print_table(res["list"])
    _exit_if_errored(res["list"], set(res.get("ids") or []))


_EnvOpt = Annotated[str | None, typer.Option("--env", help="use env_<NAME> from the ecosystem file")]
_OnlyOpt = Annotated[list[str] | None, typer.Option("--only", help="only these apps of the file")]
_UpdateEnvOpt = Annotated[bool, typer.Option("--update-env", "-a", help="always on with a file, as in pm2")]
_File = Annotated[str, typer.Argument(help="an ecosystem file")]


@app.command("startOrReload", help="Start the file's apps that are not running, reload the others.")
def start_or_reload(file: _File, env: _EnvOpt = None, only: _OnlyOpt = None,
                    update_env: _UpdateEnvOpt = False) -> None:
    _start_or("startOrReload", file, env, only)


@app.command("startOrRestart", help="Start the file's apps that are not running, restart the others.")
def start_or_restart(file: _File, env: _EnvOpt = None, only: _OnlyOpt = None,
                     update_env: _UpdateEnvOpt = False) -> None:
    _start_or("startOrRestart", file, env, only)


app.command("startOrGracefulReload", hidden=True)(start_or_reload)


@app.command(help="Stop apps and remove them from the list.")
def delete(targets: Targets = None) -> None:
    res = _action("delete", targets)
    cli.info(f"Applying action delete on app [{' '.join(targets or [])}](ids: {res['ids']})")
    print_table(res["list"])


app.command("del", hidden=True)(delete)


@app.command(help="Print an ecosystem file (any format pyvm2 reads, supervisor's too) as pyvm2's JSON or YAML.")
def convert(
    file: Annotated[str, typer.Argument(help="ecosystem file, supervisord.conf, conf.d/x.conf")],
    to: Annotated[str, typer.Option("--to", help="json or yaml")] = "json",
    env: Annotated[str | None, typer.Option("--env", help="use env_<NAME> from the ecosystem file")] = None,
) -> None:
    import sys

    from pyvm2 import convert as conv
    from pyvm2 import ecosystem

    fmt = to.strip().lower()
    if fmt not in ("json", "yaml", "yml"):
        raise UsageError(f"--to {to}: expected json or yaml", "pyvm2 convert supervisord.conf --to yaml")
    loaded = ecosystem.load(file, env_name=env, base_env=_base_env())
    for w in loaded.warnings:
        cli.warn(w)
    sys.stdout.write(conv.render(loaded.apps, "yaml" if fmt != "json" else "json"))


@app.command(help="Reset the restart counters of apps.")
def reset(targets: Targets = None) -> None:
    res = _action("reset", targets)
    for i in res["ids"]:
        cli.info(f"Resetting meta for process id {i}")
    print_table(res["list"])


def _list(
    sort: Annotated[str | None, typer.Option("--sort", help="name, id, pid, uptime, status, cpu, memory, restarts, namespace; :desc to reverse")] = None,
    mini: Annotated[bool, typer.Option("--mini-list", "-m", help="pm2's minimal form, one block per process")] = False,
) -> None:
    if sort or mini:
        from pyvm2.cli.more import show_list

        show_list(sort, mini)
    else:
        quick.list_apps()


app.command("list", help="List apps (aliases: ls, status, l, ps).")(_list)
for _alias in ("ls", "status", "l", "ps"):
    app.command(_alias, hidden=True)(_list)


@app.command(help="The process list as JSON (pm2's shape).")
def jlist() -> None:
    quick.jlist()


@app.command(help="Everything about one app.")
def describe(target: Annotated[str, typer.Argument(help="name or id")]) -> None:
    from pyvm2.cli.render import render_describe

    procs = _client().call("describe", {"targets": [target]})
    for p in procs:
        print(render_describe(p, width=min(_width(), 160), color=cli.use_color()))


for _alias in ("show", "desc", "info"):
    app.command(_alias, hidden=True)(describe)


@app.command(help="Show and follow app logs.")
def logs(
    targets: Annotated[list[str] | None, typer.Argument(help="names, ids, namespaces, /regex/ or all")] = None,
    lines: Annotated[int, typer.Option("--lines", help="lines to show from each file")] = 15,
    nostream: Annotated[bool, typer.Option("--nostream", help="print the last lines and exit")] = False,
    err: Annotated[bool, typer.Option("--err", help="only stderr")] = False,
    out: Annotated[bool, typer.Option("--out", help="only stdout")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="no prefixes")] = False,
    timestamp: Annotated[str | None, typer.Option("--timestamp", help="prefix streamed lines with the time; an optional dayjs format (default YYYY-MM-DD-HH:mm:ss)")] = None,
    highlight: Annotated[str | None, typer.Option("--highlight", help="highlight this text")] = None,
    json_: Annotated[bool, typer.Option("--json", help="one JSON object per line (pm2's shape)")] = False,
    format_: Annotated[bool, typer.Option("--format", help="key=value lines: timestamp= app= id= type= message=")] = False,
) -> None:
    from pyvm2.cli.logview import Style, show_logs

    wanted = list(targets or ["all"])
    client = _client()
    procs = _log_targets(client, wanted)
    label = "all" if "all" in wanted else ",".join(wanted)
    kind = "json" if json_ else "format" if format_ else "raw" if raw else "plain"
    style = Style(kind, timestamp or None, highlight or None, cli.use_color())
    show_logs(procs, target=label, daemon_log=str(client.home.log), lines=lines,
              follow=not nostream, want_out=not err, want_err=not out, raw=raw,
              timestamp=timestamp, color=style.color, style=style)


def _log_targets(client: Any, wanted: list[str]) -> list[dict]:
    """Processes for `logs`: names, ids, namespaces and `all` as elsewhere, plus /regex/ on names."""
    found: dict[int, dict] = {}
    plain = [t for t in wanted if not _is_regex(t)]
    if plain:
        for p in client.call("targets", {"targets": plain}):
            found[p["pm_id"]] = p
    regexes = [t for t in wanted if t not in plain]
    every = client.call("list") if regexes else []
    for t in regexes:
        for p in _regex_match(every, t):
            found[p["pm_id"]] = p
    return sorted(found.values(), key=lambda p: p["pm_id"])


@app.command(help="Empty log files (all apps, or the given ones).")
def flush(target: Annotated[str | None, typer.Argument()] = None) -> None:
    res = _client().call("flush", {"targets": [target] if target else []})
    cli.info(f"Logs flushed ({len(res['ids'])} app(s))")


@app.command(help="Check that the daemon answers (starting it if needed).")
def ping() -> None:
    quick.ping()


@app.command(help="Stop every app, then the daemon.")
def kill() -> None:
    from pyvm2.client import Client, daemon_pid

    client = Client()
    try:
        client.connect(autostart=False, check_version=False)
    except DaemonNotRunning:
        cli.info("pyvm2 daemon is not running")
        return
    quick.show_progress(client)
    pid = daemon_pid(client.home)
    res = client.call("kill", timeout=None)
    cli.info(f"[v] All Applications Stopped ({res['stopped']})")
    pid = res.get("pid") or pid
    deadline = time.monotonic() + 10
    while pid and time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.02)
    cli.info("[v] pyvm2 Daemon Stopped")


@app.command(help="Save the apps and whether each should run, for resurrect (and boot).")
def save(force: Annotated[bool, typer.Option("--force", help="save even an empty list")] = False) -> None:
    cli.info("Saving current process list...")
    res = _client().call("save", {"force": force})
    cli.info(f"Successfully saved {res['count']} process(es) in {res['path']}")


app.command("dump", hidden=True)(save)


@app.command(help="Bring back the saved apps: running ones start, stopped ones stay stopped.")
def resurrect(
    if_saved: Annotated[bool, typer.Option("--if-saved", help="succeed quietly when nothing was saved")] = False,
) -> None:
    res = _client().call("resurrect", {"if_saved": if_saved}, timeout=None)
    _report(res["actions"])
    print_table(res["list"])


@app.command("import-pm2", help="Bring a pm2 user's saved list (dump.pm2) over to pyvm2.")
def import_pm2(
    dump: Annotated[str | None, typer.Argument(help="pm2's dump file")] = None,
) -> None:
    from pyvm2.pm2dump import read_pm2_dump

    path = os.path.expanduser(dump or os.path.join(os.environ.get("PM2_HOME", "~/.pm2"), "dump.pm2"))
    entries, warnings = read_pm2_dump(path)
    for w in warnings:
        cli.warn(w)
    res = _client().call("resurrect", {"entries": entries}, timeout=None)
    _report(res["actions"])
    print_table(res["list"])


@app.command(help="Replace the running daemon by the installed version; apps keep running.")
def update() -> None:
    from pyvm2 import __version__
    from pyvm2.client import Client, daemon_pid

    old = Client()
    try:
        old.connect(autostart=False, check_version=False)
    except DaemonNotRunning:
        cli.info("no daemon was running; starting pyvm2 " + __version__)
        _client()
        return
    before = old.daemon_version
    pid = daemon_pid(old.home)
    # the old daemon answers once the commands in flight (a slow stop) are done
    res = old.call("handover", timeout=None)
    old.close()
    deadline = time.monotonic() + 10
    pid = res.get("pid") or pid
    while pid and time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.02)
    new = Client().connect()
    procs = new.call("list")
    running = sum(1 for p in procs if p["pm2_env"]["status"] == "online")
    cli.info(f"daemon updated from {before} to {new.daemon_version}; "
             f"{res['kept']} app(s) kept running, {running} online now")


@app.command("reloadLogs", help="Reopen every log file (after an external logrotate).")
def reload_logs() -> None:
    _client().call("reload_logs")
    cli.info("All logs reloaded")


#: Init systems pm2's `startup` knows; pyvm2 writes systemd units only.
_OTHER_INIT = ("upstart", "launchd", "systemv", "openrc", "rcd", "rcd-openbsd", "smf", "macos",
               "darwin", "ubuntu", "centos", "redhat", "amazon", "gentoo", "freebsd", "openbsd")


def _startup_unit(platform: str | None, system: bool, user: str | None, home: str | None,
                  service_name: str | None) -> Unit:
    from pyvm2 import startup as su

    if platform is not None and platform != "systemd":
        if platform in _OTHER_INIT:
            raise UsageError(f"pyvm2 writes systemd units only, not {platform} scripts",
                             "run: pyvm2 startup systemd (or pyvm2 startup --print to see the unit)")
        raise UsageError(f"unknown init system {platform!r}", "run: pyvm2 startup systemd")
    return su.Unit.make(system=system, user=user, home=home, service_name=service_name)


@app.command(help="Write a systemd unit that brings pyvm2 and the saved apps back at boot.")
def startup(
    platform: Annotated[str | None, typer.Argument(
        metavar="[systemd]", help="the init system; pyvm2 writes systemd units")] = None,
    system: Annotated[bool, typer.Option("--system", help="a system unit (root only)")] = False,
    user: Annotated[str | None, typer.Option(
        "-u", "--user", help="a system unit that runs pyvm2 as this user (root only), as pm2")] = None,
    home: Annotated[str | None, typer.Option(
        "--hp", help="that user's home; pyvm2's home is HOME/.pyvm2")] = None,
    service_name: Annotated[str | None, typer.Option(
        "--service-name", help="the unit's name (default pyvm2, or pyvm2-USER for a system unit)")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="print the unit instead of writing it")] = False,
) -> None:
    from pyvm2 import startup as su

    unit = _startup_unit(platform, system, user, home, service_name)
    if print_only:
        print(unit.text(), end="")
        return
    path = su.install(unit)
    cli.info(f"wrote {path}")
    for line in unit.enable_commands():
        print(f"  {line}")
    cli.info("then save your apps with: pyvm2 save (they come back at boot)")


@app.command(help="Remove the systemd unit written by startup.")
def unstartup(
    platform: Annotated[str | None, typer.Argument(metavar="[systemd]")] = None,
    system: Annotated[bool, typer.Option("--system")] = False,
    user: Annotated[str | None, typer.Option("-u", "--user")] = None,
    home: Annotated[str | None, typer.Option("--hp")] = None,
    service_name: Annotated[str | None, typer.Option("--service-name")] = None,
) -> None:
    from pyvm2 import startup as su

    unit = _startup_unit(platform, system, user, home, service_name)
    removed = su.uninstall(unit)
    if removed:
        cli.info(f"removed {removed}")
        for line in unit.disable_commands():
            print(f"  {line}")
    else:
        cli.info(f"no unit at {unit.path}")


def _pid_alive(pid: int) -> bool:
    """True while pid runs; a zombie waiting for its reaper counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    fields = stat_fields(pid)
    return fields is None or fields[STATE] != b"Z"


@app.command(help="A live dashboard: apps, cpu, memory, logs; keys ↑/↓ r s q.")
def monit() -> None:
    from pyvm2.cli.monit import run

    run(_client())


# ---- supervisorctl's habits: tail (bytes), signal, pid ------------------------------------------

def _procs(targets: list[str]) -> list[dict]:
    """The processes of targets; supervisorctl's `group:*` is the namespace and `group:name` the
    name, unless an app is really called so (pm2's name_prefix makes names with a colon)."""
    client = _client()
    found: dict[int, dict] = {}
    for t in targets:
        try:
            procs = client.call("targets", {"targets": [t]})
        except NotFound:
            group, colon, name = t.partition(":")
            if not colon:
                raise
            procs = client.call("targets", {"targets": [group if name in ("*", "") else name]})
        found.update((p["pm_id"], p) for p in procs)
    return [found[k] for k in sorted(found)]


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
             help="supervisorctl's tail: [-f] [-BYTES] NAME [stdout|stderr]; -100 = the last 100 bytes.")
def tail(args: Annotated[list[str] | None, typer.Argument(help="[-f] [-BYTES] NAME [stdout|stderr]")] = None) -> None:
    import sys

    follow, size, rest = False, 1600, []
    for a in args or []:
        if a == "-f":
            follow = True
        elif a.startswith("-") and a[1:].isdigit():
            size = int(a[1:])
        elif a.startswith("-"):
            raise UsageError(f"tail: unknown option {a}", "pyvm2 tail [-f] [-1600] NAME [stdout|stderr]")
        else:
            rest.append(a)
    if not rest or len(rest) > 2 or (len(rest) == 2 and rest[1] not in ("stdout", "stderr")):
        raise UsageError("tail takes one name and optionally stdout or stderr",
                         "pyvm2 tail -f worker stderr   |   pyvm2 tail -100 worker")
    procs = _procs([rest[0]])
    if len(procs) > 1:
        ids = ", ".join(str(p["pm_id"]) for p in procs)
        raise UsageError(f"{rest[0]} names {len(procs)} processes (ids {ids})",
                         f"tail one of them by id: pyvm2 tail {procs[0]['pm_id']}")
    env = procs[0]["pm2_env"]
    path = env["pm_err_log_path" if rest[1:] == ["stderr"] else "pm_out_log_path"]
    out = sys.stdout.buffer
    pos, ino = 0, None
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            f.seek(max(0, st.st_size - size))
            out.write(f.read())
            pos, ino = f.tell(), st.st_ino
    except FileNotFoundError:
        pass
    out.flush()
    while follow:
        time.sleep(0.2)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_ino != ino or st.st_size < pos:
            pos, ino = 0, st.st_ino     # rotated or flushed: start the new file from its top
        if st.st_size > pos:
            with open(path, "rb") as f:
                f.seek(pos)
                out.write(f.read())
                pos = f.tell()
            out.flush()


def _signal_number(sig: str) -> int:
    import signal as signals

    from pyvm2.units import UnitError, parse_signal

    try:
        return int(getattr(signals, parse_signal(sig)))
    except UnitError as e:
        raise UsageError(str(e), e.hint) from None


@app.command("signal", help="Send a signal to apps' main processes (supervisorctl's signal, pm2's sendSignal).")
def send_signal(
    sig: Annotated[str, typer.Argument(help="HUP, SIGUSR1, 10, ...")],
    targets: Annotated[list[str], typer.Argument(help="names, ids, namespaces, group:*, all")],
) -> None:
    num = _signal_number(sig)
    failed = False
    for p in _procs(targets):
        label = f"{p['name']} ({p['pm_id']})"
        pid = p.get("pid")
        if not pid or p["pm2_env"].get("status") not in ("online", "launching", "stopping"):
            cli.warn(f"{label}: ERROR (not running)")
            failed = True
            continue
        try:
            os.kill(pid, num)
        except ProcessLookupError:
            cli.warn(f"{label}: ERROR (it exited just now)")
            failed = True
            continue
        cli.info(f"{label}: signalled")
    if failed:
        raise Pyvm2Error("some apps were not signalled", "see pyvm2 list")


@app.command("sendSignal", hidden=True)
def send_signal_pm2(sig: Annotated[str, typer.Argument()],
                    targets: Annotated[list[str], typer.Argument()]) -> None:
    send_signal(sig, targets)


@app.command(help="The pids of apps (all apps without a name); 0 for one that is not running.")
def pid(targets: Annotated[list[str] | None, typer.Argument(help="names, ids, namespaces")] = None) -> None:
    for p in _procs(targets or ["all"]):
        print(p.get("pid") or 0)


@app.command("export", help="Write Kubernetes, Compose or systemd files for an ecosystem file.")
def export_(
    target: Annotated[str, typer.Argument(help="kubernetes, compose or systemd")],
    file: Annotated[str, typer.Argument(help="the ecosystem file")],
    image: Annotated[str | None, typer.Option("--image", help="container image holding the apps")] = None,
    env: Annotated[str | None, typer.Option("--env", help="use env_<NAME> from the file")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="only these apps (comma separated)")] = None,
    out: Annotated[str | None, typer.Option("--out", help="write one file per object into this folder")] = None,
    app_dir: Annotated[str | None, typer.Option("--app-dir", help="where the file's folder is inside the image")] = None,
) -> None:
    from pyvm2.cli.export import run_export

    run_export(target, file, image=image, env=env, only=_split_list(only), out=out, app_dir=app_dir)


@app.command(help="Run an ecosystem file in the foreground, for containers (as pyvm2-runtime).",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def runtime(ctx: typer.Context) -> None:
    from pyvm2.runtime import main as runtime_main

    runtime_main(list(ctx.args))


def _web_command() -> None:
    from pyvm2.cli.web import web

    app.command(help="Serve a live web page, a JSON API and /metrics (needs pyvm2[web]).")(web)


_web_command()


from pyvm2.cli import more  # noqa: E402,F401  (registers more commands on app)
