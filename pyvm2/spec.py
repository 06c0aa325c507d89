"""AppSpec: one app's definition, fields named as pm2's options, validated and resolved."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyvm2 import values
from pyvm2.errors import ConfigError, ConfigErrors, combine_errors
from pyvm2.formats.text import Where
from pyvm2.launch import resolve_launch
from pyvm2.options import (
    BY_NAME,
    IGNORED_OPTIONS,
    KNOWN_OPTIONS,
    LOOKUP,
    OPTIONS,
    UNSET,
    is_unset,
    unknown_key_message,
)
from pyvm2.units import UnitError, clip, parse_bool, show
from pyvm2.values import LOG_FILE_DEFAULT, parse_log_size

__all__ = ["KNOWN_OPTIONS", "LOG_FILE_DEFAULT", "AppSpec", "ConfigErrors", "combine_errors",
           "command_name", "from_options", "parse_log_size"]

DEFAULT_KILL_SIGNAL = "SIGINT"


@dataclass(frozen=True)
class AppSpec:
    """A validated app. Paths are absolute; durations are milliseconds and sizes bytes, as in pm2.

    Built by `from_options` from the same pm2 keys whether they come from an ecosystem file or
    from CLI flags, so both mean exactly the same thing.
    """

    name: str
    script: str                      # absolute path (not symlink-resolved), or a command found on PATH
    cwd: str                         # absolute
    args: tuple[str, ...] = ()
    interpreter: str | None = None   # exec_interpreter; None = chosen from extension/shebang; "none" = exec directly
    interpreter_args: tuple[str, ...] = ()
    namespace: str = "default"
    instances: int = 1               # resolved count, >= 1
    exec_mode: str = "fork"          # "fork" or "cluster" (cluster runs fork copies for non-node)
    instance_var: str = "NODE_APP_INSTANCE"
    increment_var: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # app env with --env <name> already merged
    filter_env: bool | tuple[str, ...] = False
    watch: bool | tuple[str, ...] = False
    ignore_watch: tuple[str, ...] = ()
    watch_delay: int = 0
    max_memory_restart: int | None = None
    out_file: str | None = None      # None = default under PYVM2_HOME/logs; "/dev/null" = discard
    error_file: str | None = None
    log_file: str | None = None      # combined out+err; None = none; LOG_FILE_DEFAULT = <logs>/<name>.log
    merge_logs: bool = True          # False = "-<id>" suffix on log names
    log_date_format: str | None = None  # dayjs format; `time: true` sets "YYYY-MM-DDTHH:mm:ss"
    log_type: str = "raw"
    disable_logs: bool = False
    log_max_size: int | None = None  # rotate above this many bytes; None = global setting, 0 = never
    log_retain: int | None = None    # rotated files kept; None = global setting
    log_compress: bool | None = None  # gzip rotated files; None = global setting
    pid_file: str | None = None
    min_uptime: int = 1000
    max_restarts: int = 16
    autorestart: bool | str = True   # True, False, or "unexpected" (supervisor's: stop_exit_codes
                                     # end it, any other exit or a death by a signal restarts it)
    autostart: bool = True
    restart_delay: int = 0
    exp_backoff_restart_delay: int = 0  # 0 = off
    kill_timeout: int = 1600
    kill_signal: str = DEFAULT_KILL_SIGNAL
    treekill: bool = True
    stop_exit_codes: tuple[int, ...] = ()
    cron_restart: str | None = None
    user: str | None = None          # run as this user, with its groups; None = the daemon's user
    group: str | None = None         # primary group instead of the user's own
    redirect_stderr: bool = False    # stderr goes to the out log (supervisor's redirect_stderr)
    priority: int | None = None      # lower starts first and stops last (supervisor's priority)
    umask: int | None = None         # the app's umask; None = the daemon's
    wait_ready: bool = False
    listen_timeout: int = 3000
    listen: tuple[str, ...] = ()     # addresses the daemon binds (values.listen's form)
    source: str | None = None        # the ecosystem file it came from, if any

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env"] = dict(self.env)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AppSpec:
        """Rebuild from `to_dict` output (wire, dumps). Unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k not in names:
                continue
            if isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in kw
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if "env" in kw:
            if not isinstance(kw["env"], Mapping):
                raise ValueError("env must be an object")
            kw["env"] = dict(kw["env"])
        return cls(**kw)

    def definition(self) -> dict[str, Any]:
        """What decides whether a running app must be restarted when its file is started again.
        The number of instances does not: more are added, or the highest removed."""
        d = self.to_dict()
        d.pop("source", None)
        d.pop("instances", None)
        return d


# ---- building an AppSpec from pm2 options ------------------------------------------------------

Warn = Callable[[str], None]

def _warn_stderr(message: str) -> None:
    print(f"pyvm2: warning: {message}", file=sys.stderr)


class _Builder:
    """Error and warning bookkeeping for one app: every message names where the value came from."""

    def __init__(self, origin: str, index: int | None, where: Where | None, warn: Warn) -> None:
        self.origin, self.index, self.where, self.warn_fn = origin, index, where, warn
        self.errors: list[ConfigError] = []

    def _doc_path(self, keys: tuple[Any, ...]) -> tuple[Any, ...]:
        return ("apps", self.index, *keys) if self.index is not None else keys

    def label(self, keys: tuple[Any, ...]) -> str:
        text = f"apps[{self.index}]" if self.index is not None else ""
        for k in keys:
            text += f"[{k}]" if isinstance(k, int) else (f".{k}" if text else str(k))
        return text

    def position(self, keys: tuple[Any, ...]) -> tuple[int, int] | None:
        if self.where is None:
            return None
        try:
            return self.where(self._doc_path(keys))
        except Exception:
            # A position is a courtesy; failing to find one must never hide the real error.
            return None

    def error(self, keys: tuple[Any, ...], message: str, hint: str | None = None) -> ConfigError:
        pos = self.position(keys)
        return ConfigError(message, hint, file=self.origin, line=pos[0] if pos else None,
                           col=pos[1] if pos else None, path=self.label(keys) or None)

    def warn(self, keys: tuple[Any, ...], message: str, at: tuple[Any, ...] | None = None) -> None:
        pos = self.position(keys if at is None else at)
        head = self.origin + (f":{pos[0]}:{pos[1]}" if pos else "")
        label = self.label(keys)
        self.warn_fn(f"{head}: {label}: {message}" if label else f"{head}: {message}")

    @contextlib.contextmanager
    def check(self, *keys: Any) -> Iterator[None]:
        """Record a UnitError or ConfigError raised inside as an error at `keys`, and carry on."""
        try:
            yield
        except UnitError as e:
            self.errors.append(self.error(keys, str(e), e.hint))
        except ConfigError as e:
            if e.file is None:
                self.errors.append(self.error(keys, e.detail, e.hint))
            else:
                self.errors.append(e)


class _Opts:
    """The app's options keyed by canonical name, remembering which spelling the user wrote."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.keys: dict[str, str] = {}

    def __contains__(self, canonical: str) -> bool:
        return canonical in self.values

    def get(self, canonical: str, default: Any = None) -> Any:
        return self.values.get(canonical, default)

    def key(self, canonical: str) -> str:
        return self.keys.get(canonical, canonical)


def _env_value(value: Any) -> str | None:
    if isinstance(value, str):
        return values.clean(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return values.js_number(value)
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)):
        try:
            return values.clean(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                     default=str))
        except (ValueError, TypeError, RecursionError):
            raise UnitError("this value cannot be written as JSON (is it recursive?)",
                            "write the value as a string") from None
    return values.clean(str(value))


def _env_block(b: _Builder, key: str, block: Any, into: dict[str, str]) -> None:
    if not isinstance(block, Mapping):
        b.errors.append(b.error((key,), f"expected an object of variables, got {show(block)}",
                                'write it as {"NAME": "value"}'))
        return
    for name, value in block.items():
        var = str(name)
        with b.check(key, var):
            values.clean(var)
            if not var or "=" in var:
                raise UnitError(f"{show(var)} is not a usable variable name",
                                'a name cannot be empty or contain "="')
            text = _env_value(value)
            if text is None:
                b.warn((key, var), "null value: the variable is left unset")
            else:
                into[var] = text


def command_name(command: str) -> str:
    """The default name of an app whose script is a command string (pm2: the whole string)."""
    text = " ".join(command.split())
    # A "/" would make the name look like a path, so fall back to the program's name.
    return text if "/" not in text else os.path.basename(text.split()[0]) or text


def _script_name(script: str) -> str:
    base = os.path.basename(script.rstrip("/")) or script
    stem, _ext = os.path.splitext(base)
    return stem or base


def _build_env(b: _Builder, raw: Mapping[Any, Any], opts: _Opts, cwd: str | None,
               env_name: str | None, deploy_env: Mapping[str, Any] | None) -> dict[str, str]:
    """deploy.<env>.env < env_file < env < env_<env_name>; `port` sets PORT on top, as in pm2."""
    env: dict[str, str] = {}
    origin = b.origin
    for var, value in (deploy_env or {}).items():
        try:
            text = _env_value(value)
            if text is not None and values.check_var(values.clean(str(var))):
                env[str(var)] = text
        except UnitError as e:
            b.errors.append(ConfigError(str(e), e.hint, file=origin,
                                        path=f"deploy.{env_name}.env.{var}"))
    env_file = raw["env_file"] if "env_file" in raw else opts.get("env_file")
    if cwd is not None and not is_unset(BY_NAME["env_file"], env_file):
        with b.check("env_file" if "env_file" in raw else opts.key("env_file")):
            env.update(values.env_file(env_file, cwd))
    if "env" in opts:
        _env_block(b, opts.key("env"), opts.get("env"), env)
    for key, value in raw.items():
        if not (isinstance(key, str) and key.startswith("env_")) or value is None:
            continue
        selected = env_name is not None and key == f"env_{env_name}"
        if key == "env_file" and not selected:
            continue
        if not isinstance(value, Mapping) and not selected:
            continue  # pm2 accepts any value in an env_* key it is not asked to use
        block: dict[str, str] = {}
        _env_block(b, key, value, block)
        if selected:
            env.update(block)
    if env_name is not None and f"env_{env_name}" not in raw and not deploy_env:
        b.warn((), f'no "env_{env_name}" for --env {env_name}; using "env" alone')
    if "port" in opts:
        with b.check(opts.key("port")):
            port = values.whole(opts.get("port"), "a port number")
            if not 0 < port < 65536:
                raise UnitError(f"port {port} is outside 1-65535", "use a port from 1 to 65535")
            env["PORT"] = str(port)
    return env


def from_options(raw: Mapping[str, Any], *, base_dir: str, origin: str,
                 env_name: str | None = None, base_env: Mapping[str, str] | None = None,
                 warn: Warn = _warn_stderr, where: Where | None = None, index: int | None = None,
                 cli_script: bool = False, deploy_env: Mapping[str, Any] | None = None,
                 source: str | None = None) -> AppSpec:
    """The one way pm2 options (from a file or CLI flags) become an AppSpec.

    `base_dir` is what a relative `cwd` is relative to (the ecosystem file's directory, or the
    shell's); a relative `script` is relative to the app's cwd. `where(("apps", index, key, ...))`
    gives the (line, col) of a value for error messages. `deploy_env` (deploy.<env>.env) is merged
    under `env`, which is under `env_<env_name>`. Unknown options are reported through `warn`.
    The interpreter is resolved now (on the app's PATH, else `base_env`'s), so an app that cannot
    be run is a ConfigError here. Raises ConfigError, or ConfigErrors when there are several.
    """
    b = _Builder(origin, index, where, warn)
    if not isinstance(raw, Mapping):
        raise b.error((), f"expected an app object, got {show(raw)}",
                      'an app looks like {"name": "api", "script": "app.py"}')
    opts = _collect(raw, b)
    kw: dict[str, Any] = {"source": source}
    base_dir = os.path.abspath(os.path.expanduser(base_dir))

    def val(canonical: str) -> Any:
        return opts.get(canonical)

    def keys(canonical: str, *more: Any) -> tuple[Any, ...]:
        return (opts.key(canonical), *more)

    # Options converted by their row alone; those relative to cwd come after cwd is known.
    for option in OPTIONS:
        if option.convert is not None and not option.relative and option.name in opts:
            with b.check(*keys(option.name)):
                value = option.convert(val(option.name))
                if value is not UNSET:
                    kw[option.target] = value
    instances_written: int | None = None
    if "instances" in opts:
        with b.check(*keys("instances")):
            kw["instances"], instances_written = values.instances(val("instances"))
    if kw.get("autorestart") == "unexpected" and "stop_exit_codes" not in kw:
        kw["stop_exit_codes"] = (0,)  # supervisor's exitcodes default
    for canonical, what in (("shutdown_with_message", "apps are stopped with kill_signal"),):
        if canonical in opts:
            with b.check(*keys(canonical)):
                if parse_bool(val(canonical)):
                    b.warn(keys(canonical), f"{opts.key(canonical)} is not supported; {what}")

    # pm2: merge_logs defaults to true unless instances (other than 0/"max") or cluster is explicit.
    if "merge_logs" not in kw:
        kw["merge_logs"] = not (instances_written not in (None, 0) or kw.get("exec_mode") == "cluster")

    # Paths: cwd from base_dir, then everything else from cwd.
    cwd: str | None = None
    with b.check(*keys("cwd")):
        cwd = (base_dir if "cwd" not in opts
               else values.expand(values.string(val("cwd"), "a directory"), base_dir))
        if not os.path.isdir(cwd):
            what = "is not a directory" if os.path.exists(cwd) else "does not exist"
            raise UnitError(f"cwd {what}: {cwd}",
                            "a relative cwd counts from the ecosystem file's directory"
                            if not cli_script else "check the path")
    env = kw["env"] = _build_env(b, raw, opts, cwd, env_name, deploy_env)
    if base_env is None:
        base_env = os.environ
    path_env = env.get("PATH") or base_env.get("PATH") or os.defpath
    script: str | None = None
    found: _Script | None = None
    if cwd is not None:
        kw["cwd"] = cwd
        for option in OPTIONS:
            if option.convert is not None and option.relative and option.name in opts:
                with b.check(*keys(option.name)):
                    kw[option.target] = option.convert(val(option.name), cwd)
        if "script" not in opts:
            b.errors.append(b.error((), 'no "script"',
                                    'every app needs "script": the file or command to run'))
        else:
            with b.check(*keys("script")):
                found = _resolve_script(val("script"), cwd, path_env, kw, cli_script)
                script = found.path
                kw.update(found.overrides)

    # Name: given, else from the script; then pm2's name_prefix and append_env_to_name.
    name: str | None = None
    if "name" in opts:
        with b.check(*keys("name")):
            name = values.check_name(values.string(val("name")), "name")
    elif found is not None:
        with b.check(*keys("script")):
            name = values.check_name(found.name, "name")
    if name is not None:
        if "name_prefix" in opts:
            with b.check(*keys("name_prefix")):
                name = f"{values.string(val('name_prefix'))}:{name}"
        if "append_env_to_name" in opts and env_name:
            with b.check(*keys("append_env_to_name")):
                if parse_bool(val("append_env_to_name")):
                    name = f"{name}-{env_name}"

    if b.errors or script is None or name is None:
        raise combine_errors(b.errors or [b.error((), "invalid app")])
    spec = AppSpec(name=name, script=script, **kw)

    with b.check(*keys("exec_interpreter" if "exec_interpreter" in opts else "script")):
        launch = resolve_launch(spec, path_env)
        runner = os.path.basename(launch.interpreter.split()[0]) if launch.interpreter else ""
        node = runner.endswith(("node", "bun"))
        if spec.exec_mode == "cluster" and not node:
            how = (f"runs with {launch.interpreter}" if launch.interpreter != "none"
                   else "runs by itself (its shebang or binary)")
            b.warn(keys("exec_mode"), f"cluster mode is for Node apps; {name} {how}, so its "
                                      f"{spec.instances} instance(s) run as separate processes "
                                      "in fork mode")
        elif node and "exec_mode" not in opts and instances_written is not None:
            spec = dataclasses.replace(spec, exec_mode="cluster")  # pm2's default for node -i N
    if b.errors:
        raise combine_errors(b.errors)
    return spec


class _Script(NamedTuple):
    path: str
    name: str                     # the default app name
    overrides: dict[str, Any]     # AppSpec fields a command string replaces (args, interpreter)


def _resolve_script(value: Any, cwd: str, path_env: str | None, kw: Mapping[str, Any],
                    cli_script: bool) -> _Script:
    """Where the script is: a file under cwd, a command string for bash -c, or a name on PATH."""
    text = values.string(value, "a file path or command")
    if not text.strip():
        raise UnitError("script is empty", "set it to the file or command to run")
    path = values.expand(text, cwd)
    if os.path.isdir(path):
        raise UnitError(f"script is a directory: {path}", "point script at the file to run")
    if os.path.exists(path):
        if not os.path.isfile(path):
            raise UnitError(f"script is not a regular file: {path}", "point script at the file to run")
        return _Script(path, _script_name(text), {})
    # pm2 runs a script with a space that is not a file through bash -c (`pm2 start "php a.php"`).
    if " " in text.strip() and kw.get("interpreter") in (None, "none"):
        shell = shutil.which("bash", path=path_env) or shutil.which("sh", path=path_env)
        if not shell:
            raise UnitError(f"cannot run the command {show(text)}: no bash or sh on PATH",
                            "install bash, or point script at a file")
        command = text.strip()
        if kw.get("args"):
            command += " " + shlex.join(kw["args"])
        return _Script(os.path.abspath(shell), command_name(text),
                       {"args": ("-c", command), "interpreter": "none"})
    if "/" not in text and not text.startswith("~"):
        try:
            found = shutil.which(text, path=path_env)
        except (OSError, ValueError):
            found = None
        if found:
            return _Script(os.path.abspath(found), _script_name(text), {})
    hint = ("check the name; it is looked up in the current directory, then on PATH"
            if cli_script else
            f"a relative script counts from the app's cwd ({cwd}); check the name or set cwd")
    raise UnitError(f"script not found: {clip(path, 300)}", hint)


def _collect(raw: Mapping[Any, Any], b: _Builder) -> _Opts:
    """Map each written key to its canonical option; warn about unknown and conflicting keys."""
    opts = _Opts()
    for key, value in raw.items():
        label = key if isinstance(key, str) else str(key)
        if isinstance(key, str) and key.startswith("env_"):
            continue
        canonical = LOOKUP.get(label)
        if canonical is None:
            b.warn((), unknown_key_message(label), at=(key,))
            continue
        if canonical in IGNORED_OPTIONS or is_unset(BY_NAME[canonical], value):
            continue  # null (or false for an optional option) means "not set", as pm2 treats it
        if canonical in opts:
            first = opts.key(canonical)
            keep_new = label == canonical and first != canonical
            if opts.get(canonical) != value:
                kept, dropped = (label, first) if keep_new else (first, label)
                b.warn((label,), f'both "{first}" and "{label}" are set; using "{kept}", '
                                 f'ignoring "{dropped}"')
            if not keep_new:
                continue
        opts.values[canonical] = value
        opts.keys[canonical] = label
    return opts
