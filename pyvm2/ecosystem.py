"""Ecosystem files to AppSpecs: pm2's three shapes, env_<name>, deploy env and --only."""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyvm2.errors import ConfigError
from pyvm2.formats.text import SHAPE_HINT, Duplicates, Parsed, Path, Where
from pyvm2.spec import AppSpec, ConfigErrors, combine_errors, command_name, from_options
from pyvm2.units import show

#: Larger files are refused before they are read: room for 10,000 apps of 800 bytes each (an app
#: with a name, a script, its args, two log paths and a few options is about 400), far past what
#: anyone writes by hand, and a bound on what a wrong path (a log, a database) costs to reject.
MAX_BYTES = 8 * 1024 * 1024
_TOP_LEVEL_KEYS = frozenset({"apps", "deploy", "static"})

Reader = Callable[[bytes, str, str, Mapping[str, str] | None], Parsed]


def _read_json5(data: bytes, path: str, display: str, base_env: Mapping[str, str] | None) -> Parsed:
    from pyvm2.formats import json5

    return json5.read(data, path, display, base_env)


def _read_yaml(data: bytes, path: str, display: str, base_env: Mapping[str, str] | None) -> Parsed:
    from pyvm2.formats import yaml

    return yaml.read(data, path, display, base_env)


def _read_js(data: bytes, path: str, display: str, base_env: Mapping[str, str] | None) -> Parsed:
    from pyvm2.formats import js

    return js.read(data, path, display, base_env)


@dataclass(frozen=True)
class Format:
    """One kind of ecosystem file: which files it claims, and its reader (bytes -> pm2's data),
    or for a format whose apps are not in pm2's shapes, its own `load`."""

    name: str
    read: Reader | None
    claims: Callable[[str], bool]           # pm2's rule: this file name is an ecosystem file
    reads: Callable[[str], bool] | None = None  # names read this way when passed (default: claims)
    sniff: Callable[[str], bool] | None = None  # given the path: does its content look like this
    load: Callable[..., Loaded] | None = None   # load()'s work, for a format with its own shapes


def _looks_like_supervisor(path: str) -> bool:
    from pyvm2.formats import supervisor

    return supervisor.looks_like_supervisor(os.path.expanduser(path))


# In order: the first whose `reads` (and `sniff`) matches a file reads it; a name none matches is
# JSON5. Readers are imported on use: most commands never read an ecosystem file.
FORMATS: tuple[Format, ...] = (
    Format("supervisor", None, lambda n: n.endswith((".conf", ".ini")),
           sniff=_looks_like_supervisor, load=lambda *a, **kw: _load_supervisor(*a, **kw)),
    Format("json5", _read_json5, lambda n: ".json" in n),
    Format("yaml", _read_yaml, lambda n: ".yml" in n or ".yaml" in n),
    Format("js", _read_js, lambda n: n.endswith((".config.js", ".config.cjs", ".config.mjs")),
           reads=lambda n: n.endswith((".js", ".cjs", ".mjs"))),
)
_DEFAULT_FORMAT = FORMATS[1]


@dataclass
class Loaded:
    """The apps of one ecosystem file, and the warnings to show before starting them."""

    apps: list[AppSpec]
    warnings: list[str] = field(default_factory=list)
    path: str = ""


def is_ecosystem_file(path: str) -> bool:
    """pm2's rule: the name contains .json/.yml/.yaml, or ends with .config.js/.cjs/.mjs; and a
    .conf/.ini file with supervisor's sections."""
    name = os.path.basename(path)
    return any(f.claims(name) and (f.sniff is None or f.sniff(path)) for f in FORMATS)


def format_of(path: str) -> Format:
    name = os.path.basename(path)
    return next((f for f in FORMATS
                 if (f.reads or f.claims)(name) and (f.sniff is None or f.sniff(path))),
                _DEFAULT_FORMAT)


def load(path: str, *, env_name: str | None = None, only: Sequence[str] | None = None,
         cwd_override: str | None = None, base_env: Mapping[str, str] | None = None) -> Loaded:
    """Read, validate and resolve every app of an ecosystem file; all of them or a ConfigError.

    Relative `cwd` values count from the file's directory; `cwd_override` (--cwd, relative to the
    shell) replaces them all. `env_name` selects `env_<name>` and `deploy.<name>.env`. `only`
    keeps the apps with those names. Raises ConfigError (ConfigErrors when there are several).
    """
    display = path
    abspath = os.path.abspath(os.path.expanduser(path))
    fmt = format_of(abspath)
    if fmt.load is not None:
        return fmt.load(abspath, display, env_name=env_name, only=only,
                        cwd_override=cwd_override, base_env=base_env)
    assert fmt.read is not None
    data, where, duplicates = fmt.read(_read_bytes(abspath, display), abspath, display, base_env)
    return _loaded(data, where, duplicates, display=display, abspath=abspath, env_name=env_name,
                   only=only, cwd_override=cwd_override, base_env=base_env)


def loads(text: str, *, display: str = "<stdin>", base_dir: str | None = None,
          env_name: str | None = None, only: Sequence[str] | None = None,
          cwd_override: str | None = None, base_env: Mapping[str, str] | None = None) -> Loaded:
    """An ecosystem given as text (JSON5 or YAML; `pyvm2 start -` reads it from standard input).
    Relative paths count from base_dir (default: the current directory)."""
    abspath = os.path.join(os.path.abspath(base_dir or os.getcwd()), display)
    read = _read_json5 if text.lstrip().startswith(("{", "[", "//", "/*")) else _read_yaml
    data, where, duplicates = read(text.encode(), abspath, display, base_env)
    return _loaded(data, where, duplicates, display=display, abspath=abspath, env_name=env_name,
                   only=only, cwd_override=cwd_override, base_env=base_env)


def _loaded(data: Any, where: Where | None, duplicates: Duplicates, *, display: str, abspath: str,
            env_name: str | None, only: Sequence[str] | None, cwd_override: str | None,
            base_env: Mapping[str, str] | None) -> Loaded:
    """The apps of read data, with a warning for every key given twice."""
    warnings = [f"{display}:{line}:{col}: {_label(path)}: {show(str(path[-1]))} is given twice; "
                "the last one is used" for path, (line, col) in duplicates]
    apps = _build(data, display=display, abspath=abspath, where=where, env_name=env_name,
                  only=only, cwd_override=cwd_override, base_env=base_env, warnings=warnings)
    return Loaded(apps=apps, warnings=warnings, path=abspath)


# ---- reading ------------------------------------------------------------------------------------

def _size_text(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def _read_bytes(path: str, display: str) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("file not found", _missing_hint(path), file=display) from None
    except PermissionError:
        raise ConfigError("permission denied", "check the permissions of the file and its folders",
                          file=display) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror or e}", None, file=display) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("this is a directory, not an ecosystem file", _dir_hint(path),
                          file=display)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("not a regular file", "pass the path of an ecosystem file", file=display)
    if st.st_size > MAX_BYTES:
        raise ConfigError(f"the file is {_size_text(st.st_size)}; an ecosystem file is at most "
                          f"{MAX_BYTES >> 20} MiB",
                          "is this the right file?", file=display)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except PermissionError:
        raise ConfigError("permission denied", "check the permissions of the file (ls -l)",
                          file=display) from None
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror or e}", None, file=display) from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"the file is larger than {MAX_BYTES >> 20} MiB", "is this the right file?",
                          file=display)
    return data


def _missing_hint(path: str) -> str:
    folder = os.path.dirname(path) or "."
    try:
        names = os.listdir(folder)
    except OSError:
        return f"{folder} does not exist" if not os.path.isdir(folder) else "check the path"
    close = difflib.get_close_matches(os.path.basename(path), names, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    return f"relative paths count from the current directory ({os.getcwd()})"


def _dir_hint(path: str) -> str:
    try:
        found = sorted(n for n in os.listdir(path) if is_ecosystem_file(os.path.join(path, n)))
    except OSError:
        found = []
    if found:
        return "pass the file inside it, for example " + os.path.join(path, found[0])
    return "pass the ecosystem file itself, for example ecosystem.json"


# ---- apps ---------------------------------------------------------------------------------------

def _label(path: Path) -> str:
    text = ""
    for k in path:
        text += f"[{k}]" if isinstance(k, int) else (f".{k}" if text else str(k))
    return text


def _at(where: Where | None, path: Path) -> tuple[int | None, int | None]:
    pos = where(path) if where is not None else None
    return pos if pos is not None else (None, None)


def _apps_of(data: Any, display: str, where: Where | None,
             warn: Callable[[str], None]) -> list[tuple[Any, Path]]:
    """The app objects, each with its path in the document (pm2's three shapes)."""
    def fail(path: Path, message: str, hint: str | None = SHAPE_HINT) -> ConfigError:
        line, col = _at(where, path)
        return ConfigError(message, hint, file=display, line=line, col=col, path=_label(path) or None)

    if isinstance(data, list):
        if not data:
            raise fail((), "no apps: the list is empty")
        return [(app, (i,)) for i, app in enumerate(data)]
    if not isinstance(data, dict):
        raise fail((), f'expected {{"apps": [...]}}, a list of apps or one app, got {show(data)}')
    if "apps" not in data:
        if not any(k in data for k in ("script", "exec", "cmd", "command")):
            raise fail((), 'no "apps" list and no "script"')
        return [(data, ())]
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            line, col = _at(where, (key,))
            pos = f":{line}:{col}" if line is not None else ""
            close = difflib.get_close_matches(str(key), sorted(_TOP_LEVEL_KEYS), n=1, cutoff=0.75)
            guess = f' (did you mean "{close[0]}"?)' if close else ""
            warn(f"{display}{pos}: unknown top-level key {show(str(key))}{guess}; it is ignored")
    if "static" in data:
        line, col = _at(where, ("static",))
        pos = f":{line}:{col}" if line is not None else ""
        warn(f'{display}{pos}: "static" (pm2\'s built-in file server) is not supported; it is ignored')
    apps = data["apps"]
    if isinstance(apps, dict):
        return [(apps, ("apps",))]  # pm2 wraps a single app object
    if not isinstance(apps, list):
        raise fail(("apps",), f'"apps" must be a list of apps, got {show(apps)}')
    if not apps:
        raise fail(("apps",), "no apps: \"apps\" is empty")
    return [(app, ("apps", i)) for i, app in enumerate(apps)]


def _deploy_env(data: Any, env_name: str | None, display: str,
                where: Where | None) -> Mapping[str, Any] | None:
    if env_name is None or not isinstance(data, dict):
        return None
    deploy = data.get("deploy")
    target = deploy.get(env_name) if isinstance(deploy, dict) else None
    env = target.get("env") if isinstance(target, dict) else None
    if env is None:
        return None
    if not isinstance(env, dict):
        path = ("deploy", env_name, "env")
        line, col = _at(where, path)
        raise ConfigError(f"expected an object of variables, got {show(env)}",
                          'write it as {"NAME": "value"}', file=display, line=line, col=col,
                          path=_label(path))
    return env


def _raw_names(app: Any, env_name: str | None) -> set[str]:
    """The names an app may end up with, for --only, before it is validated."""
    if not isinstance(app, dict):
        return set()
    name = app.get("name")
    if not isinstance(name, str):
        script = next((app[k] for k in ("script", "exec", "cmd", "command")
                       if isinstance(app.get(k), str)), None)
        if script is None:
            return set()
        base = os.path.basename(script.strip().rstrip("/"))
        candidates = {os.path.splitext(base)[0] or base, command_name(script), script.strip()}
    else:
        candidates = {name}
    prefix = app.get("name_prefix")
    out = set(candidates)
    for c in candidates:
        if isinstance(prefix, str):
            out.add(f"{prefix}:{c}")
        if env_name:
            out.add(f"{c}-{env_name}")
            if isinstance(prefix, str):
                out.add(f"{prefix}:{c}-{env_name}")
    return out


def _build(data: Any, *, display: str, abspath: str, where: Where | None, env_name: str | None,
           only: Sequence[str] | None, cwd_override: str | None,
           base_env: Mapping[str, str] | None, warnings: list[str]) -> list[AppSpec]:
    entries = [(i, app, doc_path)
               for i, (app, doc_path) in enumerate(_apps_of(data, display, where, warnings.append))]
    deploy_env = _deploy_env(data, env_name, display, where)
    if only:
        wanted = [n for n in only if n]
        names_by_entry = [_raw_names(app, env_name) for _, app, _ in entries]
        unknown = [n for n in wanted if not any(n in names for names in names_by_entry)]
        if unknown:
            known = sorted({sorted(names)[0] for names in names_by_entry if names})
            raise ConfigError(f"--only {show(unknown[0])} matches no app in this file",
                              "apps in this file: " + (", ".join(known) or "(none with a name)"),
                              file=display)
        entries = [e for e, names in zip(entries, names_by_entry, strict=True) if names & set(wanted)]
    if cwd_override is not None:
        cwd_override = os.path.abspath(os.path.expanduser(cwd_override))
        if not os.path.isdir(cwd_override):
            raise ConfigError(f"--cwd {cwd_override} is not a directory", "check the path")

    base_dir = os.path.dirname(abspath)
    errors: list[ConfigError] = []
    apps: list[AppSpec] = []
    first_index: dict[str, int] = {}
    for index, raw, doc_path in entries:
        if cwd_override is not None and isinstance(raw, dict):
            raw = {**raw, "cwd": cwd_override}
        app_where = _app_where(where, doc_path)
        try:
            spec = from_options(raw, base_dir=base_dir, origin=display, env_name=env_name,
                                base_env=base_env, warn=warnings.append, where=app_where,
                                index=index, deploy_env=deploy_env, source=abspath)
        except ConfigErrors as e:
            errors.extend(e.errors)
            continue
        except ConfigError as e:
            errors.append(e)
            continue
        if spec.name in first_index:
            key = "name" if isinstance(raw, dict) and "name" in raw else "script"
            line, col = _at(app_where, ("apps", index, key))
            errors.append(ConfigError(
                f"duplicate name {show(spec.name)}: apps[{first_index[spec.name]}] has it too",
                "names must be unique within a file; use instances to run copies",
                file=display, line=line, col=col, path=f"apps[{index}].{key}"))
            continue
        first_index[spec.name] = index
        apps.append(spec)
    if errors:
        raise combine_errors(errors)
    return apps


def _app_where(where: Where | None, doc_path: Path) -> Where | None:
    """Translate from_options' ("apps", index, key...) to where the app sits in this document."""
    if where is None:
        return None

    def app_where(path: Path) -> tuple[int, int] | None:
        return where((*doc_path, *path[2:]))

    return app_where


# ---- supervisor files ---------------------------------------------------------------------------

def _load_supervisor(abspath: str, display: str, *, env_name: str | None,
                     only: Sequence[str] | None, cwd_override: str | None,
                     base_env: Mapping[str, str] | None) -> Loaded:
    """The apps of a supervisor file (ordered by priority): its programs' pm2 options through
    from_options, each error told with the supervisor option and file it came from."""
    from pyvm2.formats import supervisor

    env = dict(base_env) if base_env is not None else dict(os.environ)
    result = supervisor.read(_read_bytes(abspath, display), abspath, display, env, _read_bytes)
    warnings = list(result.warnings)
    if env_name is not None:
        warnings.append(f"{display}: --env {env_name} has no effect on a supervisor file")
    programs = result.programs
    if only:
        wanted = {n for n in only if n}
        known = {p.options["name"] for p in programs} | \
            {p.options.get("namespace") for p in programs} - {None}
        missing = sorted(wanted - known)
        if missing:
            raise ConfigError(f"--only {show(missing[0])} matches no program in this file",
                              "programs in this file: " + ", ".join(sorted(
                                  p.options["name"] for p in programs)), file=display)
        programs = [p for p in programs
                    if p.options["name"] in wanted or p.options.get("namespace") in wanted]
    if cwd_override is not None:
        cwd_override = os.path.abspath(os.path.expanduser(cwd_override))
    errors: list[ConfigError] = []
    apps: list[AppSpec] = []
    for p in programs:
        raw = dict(p.options)
        if cwd_override is not None:
            raw["cwd"] = cwd_override

        def where(keys: Path, p: supervisor.Program = p) -> tuple[int, int] | None:
            v = p.positions.get(str(keys[0])) if keys else None
            return (v.line, v.col) if v is not None else None

        try:
            apps.append(from_options(raw, base_dir=os.path.dirname(abspath),
                                     origin=p.section.file, base_env=env, warn=warnings.append,
                                     where=where, source=abspath))
        except ConfigErrors as e:
            errors.extend(_relabel(p, x) for x in e.errors)
        except ConfigError as e:
            errors.append(_relabel(p, e))
    if errors:
        raise combine_errors(errors)
    return Loaded(apps=apps, warnings=warnings, path=abspath)


def _relabel(p: Any, e: ConfigError) -> ConfigError:
    """An error about a pyvm2 option, told with the supervisor option and file it came from."""
    from pyvm2.formats.supervisor import SOURCE_KEY

    key = (e.path or "").split(".", 1)[0].split("[", 1)[0]
    v = p.positions.get(key)
    label = f"[{p.section.name}] {SOURCE_KEY.get(key, key)}" if key else f"[{p.section.name}]"
    if v is None:
        return ConfigError(e.detail, e.hint, file=p.section.file, line=p.section.line, path=label)
    return ConfigError(e.detail, e.hint, file=v.file, line=v.line, col=v.col, path=label)
