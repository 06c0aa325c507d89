"""AppSpec: one app's definition, fields named as pm2's options, validated and resolved."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pyvm2.errors import ConfigError
from pyvm2.launch import resolve_launch
from pyvm2.units import UnitError, clip, parse_bool, parse_ms, parse_signal, parse_size, show

DEFAULT_KILL_SIGNAL = "SIGINT"
# `log_file: true`: the daemon puts the combined log at its default place, <logs>/<name>.log.
# Not an absolute path, so it can never collide with a real (always absolute) log path.
LOG_FILE_DEFAULT = "<default>"


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
    autorestart: bool = True
    autostart: bool = True
    restart_delay: int = 0
    exp_backoff_restart_delay: int = 0  # 0 = off
    kill_timeout: int = 1600
    kill_signal: str = DEFAULT_KILL_SIGNAL
    treekill: bool = True
    stop_exit_codes: tuple[int, ...] = ()
    cron_restart: str | None = None
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
        if "env" in kw:
            kw["env"] = dict(kw["env"])
        return cls(**kw)

    def definition(self) -> dict[str, Any]:
        """What decides whether a running app must be restarted when its file is started again."""
        d = self.to_dict()
        d.pop("source", None)
        return d


def parse_log_size(value: Any) -> int:
    """A rotation limit: a size like "10M", or 0/false to never rotate."""
    if value is False or value == 0 or (isinstance(value, str) and value.strip() in ("0", "false")):
        return 0
    return parse_size(value)


# ---- building an AppSpec from pm2 options ------------------------------------------------------

Warn = Callable[[str], None]
Where = Callable[[tuple[Any, ...]], tuple[int, int] | None]

# pm2's option names (canonical key -> its aliases). camelCase spellings are added below, as pm2's
# validator accepts them for every key.
_ALIASES: dict[str, tuple[str, ...]] = {
    "script": ("exec", "cmd", "command"),
    "name": (), "name_prefix": (), "namespace": (), "cwd": (), "args": (),
    "exec_interpreter": ("interpreter",),
    "node_args": ("interpreter_args",),
    "out_file": ("out", "output", "out_log"),
    "error_file": ("error", "err", "err_file", "err_log"),
    "log_file": ("log",),
    "pid_file": ("pid",),
    "disable_logs": (), "log_type": (), "log_date_format": (), "time": (),
    "log_max_size": (), "log_retain": (), "log_compress": (),
    "env": (), "filter_env": (), "port": (), "append_env_to_name": (),
    "instances": (), "exec_mode": (), "instance_var": (), "increment_var": (),
    "watch": (), "ignore_watch": (), "watch_delay": (),
    "max_memory_restart": (), "min_uptime": (), "max_restarts": (),
    "autorestart": (), "autostart": (), "restart_delay": (), "exp_backoff_restart_delay": (),
    "kill_timeout": (), "kill_signal": (), "treekill": (), "stop_exit_codes": (),
    "cron_restart": ("cron",),
    "merge_logs": ("combine_logs",),
    "uid": ("user",), "gid": (),
    "wait_ready": (), "shutdown_with_message": (),
}

# Accepted so pm2 files load unchanged, but they mean nothing here: Node-only, PM2+/APM,
# Windows-only, or filled in by pm2 itself.
IGNORED_OPTIONS = frozenset({
    "vizion", "pmx", "automation", "source_map_support", "disable_source_map_support", "trace",
    "disable_trace", "v8", "event_loop_inspector", "deep_monitoring", "io", "post_update",
    "install_url", "username", "windowsHide", "kill_retry_time", "listen_timeout", "force",
    "execute_command", "write", "watch_options",
})

_MAX_INSTANCES = 1024
_TIME_FORMAT = "YYYY-MM-DDTHH:mm:ss"


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(p[:1].upper() + p[1:] if len(p) > 1 else p for p in rest)


def _build_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for canonical, aliases in _ALIASES.items():
        for key in (canonical, *aliases):
            lookup.setdefault(key, canonical)
            lookup.setdefault(_camel(key), canonical)
    for key in IGNORED_OPTIONS:
        lookup.setdefault(key, key)
        lookup.setdefault(_camel(key), key)
    return lookup


_LOOKUP = _build_lookup()
KNOWN_OPTIONS = frozenset(_LOOKUP)


class ConfigErrors(ConfigError):
    """Several problems at once: shown as the first, with the count in the hint; all in `errors`."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        more = len(errors) - 1
        extra = f"(and {more} more error{'s' if more > 1 else ''})"
        hint = f"{first.hint} {extra}" if first.hint else extra
        super().__init__(first.detail, hint, file=first.file, line=first.line, col=first.col,
                         path=first.path)
        self.errors: tuple[ConfigError, ...] = tuple(errors)


def combine_errors(errors: Sequence[ConfigError]) -> ConfigError:
    """One error to raise for a non-empty list of them, the first in file order first."""
    flat: list[ConfigError] = []
    for e in errors:
        flat.extend(e.errors if isinstance(e, ConfigErrors) else (e,))
    flat.sort(key=lambda e: (e.line is None, e.line or 0, e.col or 0))
    return flat[0] if len(flat) == 1 else ConfigErrors(flat)


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


def _text(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise UnitError(f"expected {what}, got {show(value)}", "write it as a string in quotes")
    _clean(value)
    return value


def _clean(value: str) -> str:
    if "\0" in value:
        raise UnitError(f"{show(value)} contains a NUL character", "remove the \\u0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnitError(f"{show(value)} is not valid text (lone surrogate)",
                        "remove the \\ud800-\\udfff escape") from None
    return value


def _whole(value: Any, what: str) -> int:
    """An integer from 3, 3.0 or "3" (pm2 coerces numeric strings); nothing else."""
    if isinstance(value, bool):
        raise UnitError(f"expected {what}, got {show(value)}", "write a number such as 3")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
        return int(value)
    raise UnitError(f"expected {what}, got {show(value)}", "write a number such as 3")


def _words(value: Any, what: str) -> tuple[str, ...]:
    """A list as strings, or a string split like a POSIX shell would split it."""
    if isinstance(value, str):
        _clean(value)
        try:
            return tuple(shlex.split(value))
        except ValueError:
            raise UnitError(f"unbalanced quotes in {show(value)}",
                            f"close the quote, or write {what} as a list") from None
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(_clean(item))
            elif isinstance(item, bool):
                out.append("true" if item else "false")
            elif isinstance(item, (int, float)):
                out.append(_js_number(item))
            else:
                raise UnitError(f"{what} must be strings, got {show(item)}",
                                f'write {what} as ["a", "b"] or "a b"')
        return tuple(out)
    raise UnitError(f"expected {what} as a list or a string, got {show(value)}",
                    f'write {what} as ["a", "b"] or "a b"')


def _js_number(value: int | float) -> str:
    """How JavaScript prints a number, so env values match what pm2 would pass."""
    if isinstance(value, float):
        if value.is_integer() and math.isfinite(value) and abs(value) < 1e21:
            return str(int(value))
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def _env_value(value: Any) -> str | None:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _js_number(value)
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)):
        try:
            return _clean(json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                                     default=str))
        except (ValueError, TypeError, RecursionError):
            raise UnitError("this value cannot be written as JSON (is it recursive?)",
                            "write the value as a string") from None
    return _clean(str(value))


def _env_block(b: _Builder, key: str, block: Any, into: dict[str, str]) -> None:
    if not isinstance(block, Mapping):
        b.errors.append(b.error((key,), f"expected an object of variables, got {show(block)}",
                                'write it as {"NAME": "value"}'))
        return
    for name, value in block.items():
        var = str(name)
        with b.check(key, var):
            _clean(var)
            if not var or "=" in var:
                raise UnitError(f"{show(var)} is not a usable variable name",
                                'a name cannot be empty or contain "="')
            text = _env_value(value)
            if text is None:
                b.warn((key, var), "null value: the variable is left unset")
            else:
                into[var] = text


def _check_name(value: str, what: str) -> str:
    if not value.strip():
        raise UnitError(f"{what} is empty", f"give the app a {what} such as \"api\"")
    if value.strip().isdigit():
        raise UnitError(f"{what} {show(value)} is only digits",
                        "it would be confused with a process id; use something like \"app-"
                        f"{value.strip()}\"")
    if "/" in value:
        raise UnitError(f"{what} {show(value)} contains \"/\"",
                        "it would be confused with a file path; use \"-\" or \"_\" instead")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UnitError(f"{what} {show(value)} contains a control character",
                        "use letters, digits, spaces and - _ . :")
    if what == "name" and value == "all":
        raise UnitError('name "all" is reserved', '"all" means every app on the command line')
    return value


def _expand(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _log_path(value: Any, cwd: str, *, allow_true: bool = False) -> str | None:
    if value is False:
        return None
    if value is True and allow_true:
        return LOG_FILE_DEFAULT
    text = _text(value, "a file path")
    if allow_true and text == LOG_FILE_DEFAULT:
        return text
    if text in ("NULL", "/dev/null"):
        return "/dev/null"
    if not text.strip():
        raise UnitError("the path is empty", "remove the option to use the default file")
    return _expand(text, cwd)


def _cron(value: Any) -> str | None:
    if value in (0, "0") and not isinstance(value, bool):
        return None
    text = _text(value, 'a cron pattern like "0 3 * * *"')
    from pyvm2.cronexpr import normalize, validate

    problem = validate(text)
    if problem is not None:
        raise UnitError(problem, '5 fields (minute hour day month weekday) or 6 with seconds '
                                 'first, for example "0 3 * * *" (03:00 every day); 0 disables it')
    return normalize(text)


def _current_user_matches(value: Any, group: bool) -> bool:
    import grp
    import pwd

    me = os.getgid() if group else os.getuid()
    if isinstance(value, int) and not isinstance(value, bool):
        return value == me
    if isinstance(value, str):
        if value.strip().isdigit():
            return int(value) == me
        try:
            return value == (grp.getgrgid(me).gr_name if group else pwd.getpwuid(me).pw_name)
        except KeyError:
            return False
    return False


def _instances(value: Any) -> tuple[int, int]:
    """(count, as written): "max" and 0 are one per CPU, -n is all CPUs but n (at least 1)."""
    expected = f'expected a whole number of instances or "max", got {show(value)}'
    hint = 'for example 2, "max" (one per CPU) or -1 (all CPUs but one)'
    if isinstance(value, str) and value.strip().lower() == "max":
        n = 0
    else:
        try:
            n = _whole(value, "")
        except UnitError:
            raise UnitError(expected, hint) from None
    cpus = os.cpu_count() or 1
    count = cpus if n == 0 else max(1, cpus + n) if n < 0 else n
    if count > _MAX_INSTANCES:
        raise UnitError(f"{show(value)} instances is more than {_MAX_INSTANCES}", hint)
    return count, n


def _exec_mode(value: Any) -> str:
    text = _text(value, '"fork" or "cluster"').strip().lower()
    mode = text.removesuffix("_mode")
    if mode not in ("fork", "cluster"):
        raise UnitError(f'expected "fork" or "cluster", got {show(value)}',
                        '"cluster" runs `instances` copies; both run each copy as its own process')
    return mode


def _stop_exit_codes(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    codes = []
    for item in items:
        code = _whole(item, "exit codes (whole numbers 0-255)")
        if not 0 <= code <= 255:
            raise UnitError(f"exit code {code} is outside 0-255", "exit codes are 0 to 255")
        codes.append(code)
    return tuple(codes)


def _watch(value: Any, cwd: str) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    paths = _words([value] if isinstance(value, str) else value, "watch paths")
    if not paths:
        return True  # pm2: an empty list watches the app's cwd
    return tuple(_expand(p, cwd) for p in paths)


def _filter_env(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    names = _words([value] if isinstance(value, str) else value, "filter_env names")
    return names or False


def command_name(command: str) -> str:
    """The default name of an app whose script is a command string (pm2: the whole string)."""
    text = " ".join(command.split())
    # A "/" would make the name look like a path, so fall back to the program's name.
    return text if "/" not in text else os.path.basename(text.split()[0]) or text


def _script_name(script: str) -> str:
    base = os.path.basename(script.rstrip("/")) or script
    stem, _ext = os.path.splitext(base)
    return stem or base


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

    # env: deploy.<env>.env < env < env_<env_name>; `port` sets PORT on top, as in pm2.
    env: dict[str, str] = {}
    for var, value in (deploy_env or {}).items():
        try:
            text = _env_value(value)
            if text is not None and _check_var(_clean(str(var))):
                env[str(var)] = text
        except UnitError as e:
            b.errors.append(ConfigError(str(e), e.hint, file=origin,
                                        path=f"deploy.{env_name}.env.{var}"))
    if "env" in opts:
        _env_block(b, opts.key("env"), val("env"), env)
    for key, value in raw.items():
        if isinstance(key, str) and key.startswith("env_") and value is not None:
            block: dict[str, str] = {}
            _env_block(b, key, value, block)
            if env_name is not None and key == f"env_{env_name}":
                env.update(block)
    if env_name is not None and f"env_{env_name}" not in raw and not deploy_env:
        b.warn((), f'no "env_{env_name}" for --env {env_name}; using "env" alone')
    if "port" in opts:
        with b.check(*keys("port")):
            port = _whole(val("port"), "a port number")
            if not 0 < port < 65536:
                raise UnitError(f"port {port} is outside 1-65535", "use a port from 1 to 65535")
            env["PORT"] = str(port)
    kw["env"] = env
    if base_env is None:
        base_env = os.environ
    path_env = env.get("PATH") or base_env.get("PATH") or os.defpath

    # Plain values.
    simple: list[tuple[str, Callable[[Any], Any], str]] = [
        ("max_memory_restart", parse_size, "max_memory_restart"),
        ("min_uptime", lambda v: parse_ms(v, minimum=100), "min_uptime"),
        ("restart_delay", parse_ms, "restart_delay"),
        ("exp_backoff_restart_delay", parse_ms, "exp_backoff_restart_delay"),
        ("kill_timeout", parse_ms, "kill_timeout"),
        ("watch_delay", parse_ms, "watch_delay"),
        ("kill_signal", parse_signal, "kill_signal"),
        ("autorestart", parse_bool, "autorestart"),
        ("autostart", parse_bool, "autostart"),
        ("treekill", parse_bool, "treekill"),
        ("disable_logs", parse_bool, "disable_logs"),
        ("log_max_size", parse_log_size, "log_max_size"),
        ("log_compress", parse_bool, "log_compress"),
        ("merge_logs", parse_bool, "merge_logs"),
        ("stop_exit_codes", _stop_exit_codes, "stop_exit_codes"),
        ("cron_restart", _cron, "cron_restart"),
        ("filter_env", _filter_env, "filter_env"),
        ("instance_var", lambda v: _check_var(_text(v)), "instance_var"),
        ("increment_var", lambda v: _check_var(_text(v)), "increment_var"),
        ("log_date_format", _text, "log_date_format"),
        ("exec_mode", _exec_mode, "exec_mode"),
        ("ignore_watch", lambda v: _words(v, "ignore_watch"), "ignore_watch"),
        ("node_args", lambda v: _words(v, "interpreter_args"), "interpreter_args"),
        ("args", lambda v: _words(v, "args"), "args"),
    ]
    for canonical, convert, field_name in simple:
        if canonical in opts:
            with b.check(*keys(canonical)):
                kw[field_name] = convert(val(canonical))
    if "max_restarts" in opts:
        with b.check(*keys("max_restarts")):
            n = _whole(val("max_restarts"), "a whole number of restarts (0 or more)")
            if n < 0:
                raise UnitError(f"max_restarts cannot be negative, got {n}",
                                "0 means: never restart after an unstable exit")
            kw["max_restarts"] = n
    if "log_retain" in opts:
        with b.check(*keys("log_retain")):
            n = _whole(val("log_retain"), "a whole number of rotated files to keep")
            if n < 0:
                raise UnitError(f"log_retain cannot be negative, got {n}", "0 keeps no rotated file")
            kw["log_retain"] = n
    if "log_type" in opts:
        with b.check(*keys("log_type")):
            log_type = _text(val("log_type")).strip().lower()
            if log_type not in ("raw", "json"):
                raise UnitError(f'expected "raw" or "json", got {show(val("log_type"))}',
                                '"json" writes one JSON object per line; "raw" the text as is')
            kw["log_type"] = log_type
    if "time" in opts:
        with b.check(*keys("time")):
            if parse_bool(val("time")):
                kw["log_date_format"] = _TIME_FORMAT  # pm2: `time` overrides log_date_format
    if "namespace" in opts:
        with b.check(*keys("namespace")):
            kw["namespace"] = _check_name(_text(val("namespace")), "namespace")
    if "exec_interpreter" in opts:
        with b.check(*keys("exec_interpreter")):
            interp = _text(val("exec_interpreter")).strip()
            if not interp:
                raise UnitError("exec_interpreter is empty",
                                'remove it to choose by extension, or name one such as "python3"')
            kw["interpreter"] = "none" if interp.lower() == "none" else interp
    instances_written: int | None = None
    if "instances" in opts:
        with b.check(*keys("instances")):
            kw["instances"], instances_written = _instances(val("instances"))
    for canonical in ("uid", "gid"):
        if canonical in opts:
            with b.check(*keys(canonical)):
                if not _current_user_matches(val(canonical), canonical == "gid"):
                    raise UnitError("running as another user is not supported yet",
                                    f"remove {opts.key(canonical)}, or run pyvm2 as that user")
    for canonical, what in (("wait_ready", "the app is online as soon as it starts"),
                            ("shutdown_with_message", "apps are stopped with kill_signal")):
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
        cwd = base_dir if "cwd" not in opts else _expand(_text(val("cwd"), "a directory"), base_dir)
        if not os.path.isdir(cwd):
            what = "is not a directory" if os.path.exists(cwd) else "does not exist"
            raise UnitError(f"cwd {what}: {cwd}",
                            "a relative cwd counts from the ecosystem file's directory"
                            if not cli_script else "check the path")
    script: str | None = None
    found: _Script | None = None
    if cwd is not None:
        kw["cwd"] = cwd
        for canonical, field_name in (("out_file", "out_file"), ("error_file", "error_file"),
                                      ("pid_file", "pid_file"), ("log_file", "log_file")):
            if canonical in opts:
                with b.check(*keys(canonical)):
                    kw[field_name] = _log_path(val(canonical), cwd,
                                               allow_true=canonical == "log_file")
        if "watch" in opts:
            with b.check(*keys("watch")):
                kw["watch"] = _watch(val("watch"), cwd)
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
            name = _check_name(_text(val("name")), "name")
    elif found is not None:
        with b.check(*keys("script")):
            name = _check_name(found.name, "name")
    if name is not None:
        if "name_prefix" in opts:
            with b.check(*keys("name_prefix")):
                name = f"{_text(val('name_prefix'))}:{name}"
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
            b.warn(keys("exec_mode"), f'cluster mode is for Node apps; {launch.interpreter} runs '
                                      f'{spec.instances} separate process(es) in fork mode')
        elif node and "exec_mode" not in opts and instances_written is not None:
            spec = dataclasses.replace(spec, exec_mode="cluster")  # pm2's default for node -i N
    if b.errors:
        raise combine_errors(b.errors)
    return spec


def _check_var(name: str) -> str:
    if not name or "=" in name:
        raise UnitError(f"{show(name)} is not a usable variable name",
                        'a name cannot be empty or contain "="')
    return name


class _Script(NamedTuple):
    path: str
    name: str                     # the default app name
    overrides: dict[str, Any]     # AppSpec fields a command string replaces (args, interpreter)


def _resolve_script(value: Any, cwd: str, path_env: str | None, kw: Mapping[str, Any],
                    cli_script: bool) -> _Script:
    """Where the script is: a file under cwd, a command string for bash -c, or a name on PATH."""
    text = _text(value, "a file path or command")
    if not text.strip():
        raise UnitError("script is empty", "set it to the file or command to run")
    path = _expand(text, cwd)
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
        canonical = _LOOKUP.get(label)
        if canonical is None:
            import difflib

            close = difflib.get_close_matches(label, sorted(KNOWN_OPTIONS), n=1, cutoff=0.75)
            guess = f' (did you mean "{close[0]}"?)' if close else ""
            b.warn((), f"unknown option {show(label)}{guess}", at=(key,))
            continue
        if value is None or canonical in IGNORED_OPTIONS:
            continue  # null means "not set", as pm2 treats it
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
