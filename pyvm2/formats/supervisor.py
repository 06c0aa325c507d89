"""supervisord.conf files: read as supervisord reads them, turned into pm2-style app options."""

from __future__ import annotations

import difflib
import glob
import os
import platform
import re
import shlex
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyvm2.errors import ConfigError, combine_errors
from pyvm2.formats.text import decode
from pyvm2.units import clip, size_text

#: supervisor's fallback PATH when neither the program nor supervisord has one (options.py).
DEFAULT_PATH = "/bin:/usr/bin:/usr/local/bin"
#: Sections whose presence marks a file as supervisor's.
_MARKERS = ("program:", "group:", "supervisord", "include", "eventlistener:", "fcgi-program:",
            "unix_http_server", "inet_http_server", "supervisorctl", "rpcinterface:")
_SECTION_RE = re.compile(r"\[(?P<header>.+)\]")
_OPTION_RE = re.compile(r"(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$")
_MARKER_RE = re.compile(r"^\s*\[(program:|group:|supervisord\]|include\]|eventlistener:|"
                        r"fcgi-program:|unix_http_server\]|inet_http_server\]|supervisorctl\]|"
                        r"rpcinterface:)", re.M)

#: Every [program:x] option supervisor reads, with its default (options.py, 4.x).
PROGRAM_DEFAULTS: dict[str, str | None] = {
    "command": None, "process_name": "%(program_name)s", "numprocs": "1", "numprocs_start": "0",
    "priority": "999", "autostart": "true", "startsecs": "1", "startretries": "3",
    "autorestart": "unexpected", "exitcodes": "0", "stopsignal": "TERM", "stopwaitsecs": "10",
    "stopasgroup": "false", "killasgroup": None, "user": None, "redirect_stderr": "false",
    "stdout_logfile": "AUTO", "stdout_logfile_maxbytes": "50MB", "stdout_logfile_backups": "10",
    "stdout_capture_maxbytes": "0", "stdout_events_enabled": "false", "stdout_syslog": "false",
    "stderr_logfile": "AUTO", "stderr_logfile_maxbytes": "50MB", "stderr_logfile_backups": "10",
    "stderr_capture_maxbytes": "0", "stderr_events_enabled": "false", "stderr_syslog": "false",
    "environment": None, "directory": None, "umask": None, "serverurl": "AUTO",
}
#: Read once per process (they may use %(process_num)d); the rest once per program.
_PER_PROCESS = frozenset({"command", "environment", "directory", "stdout_logfile",
                          "stderr_logfile", "stdout_logfile_backups", "stderr_logfile_backups",
                          "stdout_logfile_maxbytes", "stderr_logfile_maxbytes", "stdout_syslog",
                          "stderr_syslog", "process_name"})
#: Options with no pyvm2 counterpart: warned about when set to something other than the default.
_UNSUPPORTED = {
    "serverurl": "pyvm2 has no XML-RPC server",
    "stdout_capture_maxbytes": "pyvm2 has no event system",
    "stderr_capture_maxbytes": "pyvm2 has no event system",
    "stdout_events_enabled": "pyvm2 has no event system",
    "stderr_events_enabled": "pyvm2 has no event system",
    "stdout_syslog": "pyvm2 writes log files only",
    "stderr_syslog": "pyvm2 writes log files only",
}
#: pyvm2 option -> the supervisor option it came from (for error messages).
SOURCE_KEY = {
    "name": "process_name", "script": "command", "args": "command",
    "exec_interpreter": "command", "cwd": "directory", "env": "environment",
    "autostart": "autostart", "autorestart": "autorestart", "stop_exit_codes": "exitcodes",
    "min_uptime": "startsecs", "max_restarts": "startretries", "kill_signal": "stopsignal",
    "kill_timeout": "stopwaitsecs", "treekill": "stopasgroup", "user": "user",
    "redirect_stderr": "redirect_stderr", "out_file": "stdout_logfile",
    "error_file": "stderr_logfile", "log_max_size": "stdout_logfile_maxbytes",
    "log_retain": "stdout_logfile_backups", "instances": "numprocs", "priority": "priority",
    "namespace": "process_name",
}
_SUPERLANCE = {
    "memmon": "use max_memory_restart instead",
    "httpok": "pyvm2 has no HTTP health check",
    "crashmail": "pyvm2 does not send mail",
    "crashmailbatch": "pyvm2 does not send mail",
    "fatalmailbatch": "pyvm2 does not send mail",
}
_PERCENT_HINT = "supervisor formats every value with %: write %% for a literal %"


@dataclass
class Value:
    """One option's text and where it was written."""

    text: str
    file: str
    line: int
    col: int
    cut_comment: bool = False   # an inline ; or # comment was removed from the line


@dataclass
class Section:
    name: str
    file: str
    line: int
    options: dict[str, Value] = field(default_factory=dict)


@dataclass
class Program:
    """One app's pm2-style options, where each came from, and how to order it."""

    options: dict[str, Any]
    section: Section
    positions: dict[str, Value]
    order: tuple[int, str, int, str]


@dataclass
class Result:
    programs: list[Program]
    warnings: list[str]
    files: list[str]


def looks_like_supervisor(path: str) -> bool:
    """A .conf/.ini file with at least one of supervisor's section headers."""
    if not path.endswith((".conf", ".ini")):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(256 * 1024)
    except OSError:
        return False
    return _MARKER_RE.search(head) is not None


# ---- the ini syntax, as Python's RawConfigParser reads it for supervisor ------------------------

def _inline_comment(line: str) -> int | None:
    """Where an inline ; or # comment starts: only at the start or after whitespace."""
    best: int | None = None
    for prefix in (";", "#"):
        index = line.find(prefix)
        while index != -1:
            if index == 0 or line[index - 1].isspace():
                best = index if best is None else min(best, index)
                break
            index = line.find(prefix, index + 1)
    return best


def parse_ini(text: str, file: str, sections: dict[str, Section],
              errors: list[ConfigError]) -> list[str]:
    """Add the sections of `text` to `sections` (merged, last value wins). Returns the names of
    the sections this file wrote, in order."""
    names: list[str] = []
    cur: Section | None = None
    optname: str | None = None
    pieces: dict[tuple[str, str], list[str]] = {}
    indent_level = 0
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line
        comment = _inline_comment(line)
        if line.strip().startswith((";", "#")):
            comment = 0
        value = line[:comment].strip() if comment is not None else line.strip()
        if not value:
            if comment is None and cur is not None and optname is not None:
                pieces[(cur.name, optname)].append("")
            continue
        cur_indent = len(line) - len(line.lstrip())
        if cur is not None and optname is not None and cur_indent > indent_level:
            pieces[(cur.name, optname)].append(value)
            if comment is not None:
                cur.options[optname].cut_comment = True
            continue
        indent_level = cur_indent
        m = _SECTION_RE.match(value)
        if m:
            header = m.group("header")
            cur = sections.get(header)
            if cur is None:
                cur = sections[header] = Section(header, file, lineno)
            if header not in names:
                names.append(header)
            optname = None
            continue
        if cur is None:
            if value.startswith("["):
                errors.append(ConfigError("a section header needs a closing ]",
                                          "write it as [program:worker]", file=file,
                                          line=lineno, col=cur_indent + 1))
            else:
                errors.append(ConfigError("this line comes before any [section]",
                                          "start the file with a section such as "
                                          "[program:worker]", file=file, line=lineno,
                                          col=cur_indent + 1))
            return names
        m = _OPTION_RE.match(value)
        if not m or not m.group("option"):
            errors.append(ConfigError(f"expected key=value, found {value[:60]!r}",
                                      "write option=value, or start the line with ; to make it "
                                      "a comment", file=file, line=lineno, col=cur_indent + 1))
            optname = None
            continue
        optname = m.group("option").rstrip().lower()
        start = cur_indent + m.start("value")
        cur.options[optname] = Value("", file, lineno, start + 1, cut_comment=comment is not None)
        pieces[(cur.name, optname)] = [m.group("value").strip()]
    for (sect, opt), parts in pieces.items():
        if opt in sections[sect].options:
            sections[sect].options[opt].text = "\n".join(parts).rstrip()
    return names


def expand(value: Value, expansions: Mapping[str, Any], what: str) -> str:
    """supervisor's `%` formatting of an option value; its errors as file:line errors."""
    try:
        return value.text % expansions
    except KeyError as e:
        name = str(e.args[0]) if e.args else "?"
        close = difflib.get_close_matches(name, list(expansions), n=1, cutoff=0.6)
        available = ", ".join(sorted(k for k in expansions if not k.startswith("ENV_")))
        hint = (f'did you mean %({close[0]})s? ' if close else "") + \
            f"available here: {available} and %(ENV_NAME)s for environment variables"
        if name.startswith("ENV_"):
            hint = f"{name[4:]} is not set in the environment pyvm2 was started from"
        raise ConfigError(f"{what}: %({name})s cannot be expanded", hint, file=value.file,
                          line=value.line, col=value.col) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{what}: badly formatted value ({e})", _PERCENT_HINT, file=value.file,
                          line=value.line, col=value.col) from None


# ---- supervisor's value types --------------------------------------------------------------------

class _Bad(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _Bad(f"expected a whole number, got {text!r}") from None


def _boolean(text: str) -> bool:
    t = text.strip().lower()
    if t in ("yes", "true", "on", "1"):
        return True
    if t in ("no", "false", "off", "0"):
        return False
    raise _Bad(f"not a valid boolean value: {text!r}", "use true or false")


def _byte_size(text: str) -> int:
    t = text.strip().lower()
    for suffix, mult in (("kb", 1024), ("mb", 1024**2), ("gb", 1024**3)):
        if t.endswith(suffix):
            t, factor = t[:-2], mult
            break
    else:
        factor = 1
    try:
        return int(t) * factor
    except ValueError:
        raise _Bad(f"expected a size such as 50MB, got {text!r}",
                   "supervisor takes bytes, or a number followed by KB, MB or GB") from None


def _exitcodes(text: str) -> list[int]:
    if not text.strip():
        return []
    try:
        codes = [int(x) for x in text.split(",")]
    except ValueError:
        raise _Bad(f"not a valid list of exit codes: {text!r}", "write them as 0,2") from None
    for c in codes:
        if not 0 <= c <= 255:
            raise _Bad(f'invalid exit code "{c}"', "exit codes are 0 to 255")
    return codes


def _signal_name(text: str) -> str:
    t = text.strip().upper()
    try:
        return signal.Signals(int(t)).name
    except ValueError:
        pass
    name = t if t.startswith("SIG") else "SIG" + t
    if name not in signal.Signals.__members__:
        raise _Bad(f"value {text!r} is not a valid signal name", "for example TERM, INT, QUIT, HUP")
    return name


def _name(text: str) -> str:
    s = text.strip()
    for ch in " :/":
        if ch in s:
            raise _Bad(f"invalid name {s!r} because of the character {ch!r}",
                       "names may not contain spaces, : or /")
    if not s:
        raise _Bad("the name is empty", "write a name after the colon: [program:worker]")
    return s


def environment(text: str) -> dict[str, str]:
    """`KEY="val",KEY2=val2` exactly as supervisor's dict_of_key_value_pairs reads it."""
    lexer = shlex.shlex(text, posix=True)
    lexer.wordchars += "/.+-():"
    try:
        tokens = list(lexer)
    except ValueError as e:
        raise _Bad(str(e), 'quote values with "..." and close every quote') from None
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        kv = tokens[i:i + 3]
        if len(kv) != 3 or kv[1] != "=":
            raise _Bad(f"unexpected end of key/value pairs in {text!r}",
                       'write KEY="value",KEY2="value2" (commas between pairs)')
        out[kv[0]] = kv[2]
        i += 4
    return out


def _mangled(text: str) -> bool:
    """Whether an unquoted ? or # cuts a value short, as supervisor's shlex split does."""
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "?#":
            return True
    return False


# ---- files and includes --------------------------------------------------------------------------

def _display(path: str) -> str:
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


ReadBytes = Callable[[str, str], bytes]


def read(data: bytes, path: str, display: str, base_env: Mapping[str, str],
         read_bytes: ReadBytes) -> Result:
    """A supervisor file (its bytes, `data`) and the files it [include]s (read with
    `read_bytes(path, display)`) as one Program per pyvm2 app, ordered by priority."""
    errors: list[ConfigError] = []
    warnings: list[str] = []
    sections: dict[str, Section] = {}
    abspath = os.path.abspath(path)
    here = os.path.dirname(abspath)
    parse_ini(decode(data, display), display, sections, errors)
    if errors:
        raise _combine(errors)
    files = [abspath]
    _expand_here(sections, here)
    env_exp: dict[str, str] = {f"ENV_{k}": v for k, v in base_env.items()}
    host = platform.node()
    include = sections.get("include")
    if include is not None:
        if "files" not in include.options:
            raise ConfigError("[include] has no files= setting",
                              "write files = conf.d/*.conf (globs, relative to this file)",
                              file=include.file, line=include.line)
        val = include.options["files"]
        patterns = expand(val, {"here": here, "host_node_name": host, **env_exp},
                          "[include] files").split()
        seen = {os.path.realpath(abspath)}
        for pattern in patterns:
            full = os.path.join(here, pattern)
            matches = sorted(glob.glob(full))
            if not matches:
                warnings.append(f"{val.file}:{val.line}: [include] no file matches {full}")
                continue
            for match in matches:
                real = os.path.realpath(match)
                if real in seen:
                    warnings.append(f"{val.file}:{val.line}: [include] {_display(match)} is "
                                    "already read; it is not read again")
                    continue
                seen.add(real)
                inc_display = _display(match)
                before = {n: dict(s.options) for n, s in sections.items()}
                written = parse_ini(decode(read_bytes(match, inc_display), inc_display), inc_display,
                                   sections, errors)
                if errors:
                    raise _combine(errors)
                files.append(match)
                if "include" in written:
                    warnings.append(f"{inc_display}: its [include] is not followed (supervisor "
                                    "reads only the main file's [include])")
                for name in written:
                    for key, v in sections[name].options.items():
                        if before.get(name, {}).get(key) is not v and "%(here)s" in v.text:
                            v.text = v.text.replace("%(here)s", os.path.dirname(os.path.abspath(match)))
    programs = _programs(sections, display, here, host, env_exp, base_env, warnings)
    return Result(programs, warnings, files)


def _expand_here(sections: Mapping[str, Section], here: str) -> None:
    for s in sections.values():
        for v in s.options.values():
            if "%(here)s" in v.text:
                v.text = v.text.replace("%(here)s", here)


def _combine(errors: Sequence[ConfigError]) -> ConfigError:
    return combine_errors(errors)


# ---- sections to apps ----------------------------------------------------------------------------

def _programs(sections: dict[str, Section], display: str, here: str, host: str,
              env_exp: dict[str, str], base_env: Mapping[str, str],
              warnings: list[str]) -> list[Program]:
    errors: list[ConfigError] = []
    defaults = sections.get("DEFAULT")
    sup = sections.get("supervisord")
    global_env: dict[str, str] = {}
    default_cwd: str | None = None
    if sup is not None:
        try:
            global_env, default_cwd = _supervisord(sup, here, host, env_exp, warnings)
        except ConfigError as e:
            errors.append(e)
        env_exp.update({f"ENV_{k}": v for k, v in global_env.items()})
    for name, s in sections.items():
        _other_section(name, s, here, warnings)

    group_of: dict[str, tuple[str, int]] = {}
    for name, s in sections.items():
        if not name.startswith("group:"):
            continue
        try:
            gname = _name(name.split(":", 1)[1])
            opts = _with_defaults(s, defaults)
            members = [m.strip() for m in expand(opts["programs"], {"here": here, **env_exp},
                                                 f"[{name}] programs").split(",")] \
                if "programs" in opts else []
            prio = _integer(expand(opts["priority"], {"here": here, **env_exp},
                                   f"[{name}] priority")) if "priority" in opts else 999
        except _Bad as e:
            errors.append(ConfigError(f"[{name}]: {e}", e.hint, file=s.file, line=s.line))
            continue
        except ConfigError as e:
            errors.append(e)
            continue
        for m in members:
            if not m:
                continue
            if f"program:{m}" not in sections:
                v = s.options.get("programs")
                errors.append(ConfigError(
                    f"[{name}] names unknown program {m!r}",
                    f"add a [program:{m}] section, or remove {m} from programs=",
                    file=v.file if v else s.file, line=v.line if v else s.line))
                continue
            group_of[m] = (gname, prio)
        for key in s.options:
            if key not in ("programs", "priority"):
                _unknown(s, key, ("programs", "priority"), warnings)

    programs: list[Program] = []
    for name, s in sections.items():
        if not name.startswith("program:"):
            continue
        pname = name.split(":", 1)[1]
        try:
            programs.extend(_program(s, defaults, pname, group_of.get(pname.strip()), here, host,
                                     env_exp, global_env, default_cwd, base_env, warnings))
        except ConfigError as e:
            errors.append(e)
    if errors:
        raise _combine(errors)
    if not programs:
        raise ConfigError("no [program:x] section",
                          "a supervisor file runs what its [program:name] sections say "
                          "(command=...); check [include] files=", file=display)
    names: dict[str, Program] = {}
    for p in programs:
        n = p.options["name"]
        if n in names:
            v = p.positions.get("name") or Value("", p.section.file, p.section.line, 1)
            errors.append(ConfigError(f"duplicate process name {n!r} (also [{names[n].section.name}])",
                                      "process names must be unique", file=v.file, line=v.line))
        names[n] = p
    if errors:
        raise _combine(errors)
    programs.sort(key=lambda p: p.order)
    return programs


def _with_defaults(s: Section, defaults: Section | None) -> dict[str, Value]:
    return {**(defaults.options if defaults else {}), **s.options}


def _supervisord(s: Section, here: str, host: str, env_exp: dict[str, str],
                 warnings: list[str]) -> tuple[dict[str, str], str | None]:
    exp = {"here": here, "host_node_name": host, **env_exp}
    env: dict[str, str] = {}
    cwd: str | None = None
    ignored = []
    for key, v in s.options.items():
        if key == "environment":
            try:
                env = environment(expand(v, exp, "[supervisord] environment"))
            except _Bad as e:
                raise ConfigError(f"[supervisord] {e}", e.hint, file=v.file, line=v.line,
                                  col=v.col) from None
        elif key == "directory":
            cwd = os.path.join(here, expand(v, exp, "[supervisord] directory"))
        else:
            ignored.append(key)
    if ignored:
        warnings.append(f"{s.file}:{s.line}: [supervisord] {', '.join(ignored)}: not used by "
                        "pyvm2 (its daemon keeps its own log, pid and socket in PYVM2_HOME)")
    return env, cwd


def _other_section(name: str, s: Section, here: str, warnings: list[str]) -> None:
    at = f"{s.file}:{s.line}"
    if name.startswith("eventlistener:"):
        cmd = s.options.get("command")
        which = next((k for k in _SUPERLANCE if cmd is not None and k in cmd.text), None)
        extra = f" ({which}: {_SUPERLANCE[which]})" if which else ""
        warnings.append(f"{at}: [{name}] event listeners are not supported; it is ignored{extra}")
    elif name.startswith("fcgi-program:"):
        warnings.append(f"{at}: [{name}] FastCGI programs are not supported; it is ignored")
    elif name == "inet_http_server":
        port = s.options.get("port")
        note = (f"{at}: [inet_http_server] is not used: pyvm2 is controlled through a private "
                "unix socket")
        if port is not None and "username" not in s.options:
            host = port.text.rsplit(":", 1)[0]
            if host in ("", "*", "0.0.0.0", "::"):
                note += (f" (this one listened on {port.text} for everyone without a password; "
                         "supervisor's docs say never to do that)")
        warnings.append(note)
    elif name in ("unix_http_server", "supervisorctl"):
        warnings.append(f"{at}: [{name}] is not used: pyvm2's socket is $PYVM2_HOME/pyvm2.sock "
                        "(0600, its owner only)")
    elif name.startswith("rpcinterface:") or name in ("include", "supervisord", "DEFAULT") \
            or name.startswith(("program:", "group:")):
        return
    else:
        low = name.lower()
        for prefix in ("program:", "group:", "eventlistener:", "fcgi-program:", "include",
                       "supervisord"):
            if low.startswith(prefix) and not name.startswith(prefix):
                right = prefix + name[len(prefix):]
                warnings.append(f"{at}: [{name}] is ignored: supervisor's section names are "
                                f"case-sensitive (did you mean [{right}]?)")
                return
        warnings.append(f"{at}: [{name}] is not a supervisor section; it is ignored")


def _unknown(s: Section, key: str, known: Sequence[str], warnings: list[str]) -> None:
    v = s.options[key]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    guess = f" (did you mean {close[0]}?)" if close else ""
    warnings.append(f"{v.file}:{v.line}: [{s.name}] unknown option {key!r}{guess}; "
                    "supervisor ignores it too")


def _program(s: Section, defaults: Section | None, pname: str, group: tuple[str, int] | None,
             here: str, host: str, env_exp: dict[str, str], global_env: Mapping[str, str],
             default_cwd: str | None, base_env: Mapping[str, str],
             warnings: list[str]) -> list[Program]:
    opts = _with_defaults(s, defaults)
    where = f"[{s.name}]"

    def bad(key: str, e: _Bad) -> ConfigError:
        v = opts.get(key)
        if v is None:
            return ConfigError(f"{where} {key}: {e}", e.hint, file=s.file, line=s.line)
        return ConfigError(f"{where} {key}: {e}", e.hint, file=v.file, line=v.line, col=v.col)

    try:
        program_name = _name(pname)
    except _Bad as e:
        raise ConfigError(f"{where}: {e}", e.hint, file=s.file, line=s.line) from None
    group_name = group[0] if group else program_name
    common: dict[str, Any] = {"here": here, "program_name": program_name,
                              "host_node_name": host, "group_name": group_name, **env_exp}

    def text(key: str, exp: Mapping[str, Any] | None = None) -> str:
        v = opts.get(key)
        if v is None:
            default = PROGRAM_DEFAULTS.get(key)
            return "" if default is None else default
        return expand(v, common if exp is None else exp, f"{where} {key}")

    for key in opts:
        if key not in PROGRAM_DEFAULTS and (defaults is None or key not in defaults.options):
            _unknown(s, key, list(PROGRAM_DEFAULTS), warnings)
    if "command" not in opts:
        raise ConfigError(f"{where} has no command=", "add command=/path/to/program --args",
                          file=s.file, line=s.line)
    o: dict[str, Any] = {}
    pos: dict[str, Value] = {}

    def put(key: str, value: Any, source: str) -> None:
        o[key] = value
        if source in opts:
            pos[key] = opts[source]

    try:
        key = "priority"
        priority = _integer(text(key))
        key = "numprocs"
        numprocs = _integer(text(key))
        if not 1 <= numprocs <= 1024:
            raise _Bad(f"numprocs must be 1 to 1024, got {numprocs}", "for example numprocs=4")
        key = "numprocs_start"
        numprocs_start = _integer(text(key))
        key = "autostart"
        autostart = _boolean(text(key))
        key = "autorestart"
        ar = text(key).strip().lower()
        if ar not in ("yes", "true", "on", "1", "no", "false", "off", "0", "unexpected"):
            raise _Bad(f"invalid autorestart value {ar!r}", "use true, false or unexpected")
        key = "exitcodes"
        exitcodes = _exitcodes(text(key))
        key = "startsecs"
        startsecs = _integer(text(key))
        key = "startretries"
        startretries = _integer(text(key))
        key = "stopsignal"
        stopsignal = _signal_name(text(key))
        key = "stopwaitsecs"
        stopwaitsecs = _integer(text(key))
        key = "stopasgroup"
        stopasgroup = _boolean(text(key))
        key = "killasgroup"
        killasgroup = _boolean(text(key)) if "killasgroup" in opts else stopasgroup
        key = "redirect_stderr"
        redirect = _boolean(text(key))
        key = "user"
        user = text(key).strip() if "user" in opts else None
        key = "umask"
        umask = text(key).strip() if "umask" in opts else None
        if umask is not None and not re.fullmatch(r"[0-7]{1,4}", umask):
            raise _Bad(f"{umask!r} is not an octal umask", "for example 022 or 002")
        for key in _UNSUPPORTED:
            if key in opts and text(key).strip().lower() != str(PROGRAM_DEFAULTS[key]).lower():
                v = opts[key]
                warnings.append(f"{v.file}:{v.line}: {where} {key} is not supported: "
                                f"{_UNSUPPORTED[key]}; it is ignored")
    except _Bad as e:
        raise bad(key, e) from None
    if startsecs < 0 or startretries < 0 or stopwaitsecs < 0:
        key = "startsecs" if startsecs < 0 else "startretries" if startretries < 0 else "stopwaitsecs"
        raise bad(key, _Bad("cannot be negative"))
    if stopasgroup and not killasgroup:
        raise bad("killasgroup", _Bad("cannot set stopasgroup=true and killasgroup=false",
                                      "remove killasgroup=false"))
    process_name_v = opts.get("process_name")
    process_name_tpl = process_name_v.text if process_name_v else "%(program_name)s"
    if numprocs > 1 and "%(process_num)" not in process_name_tpl:
        raise bad("numprocs", _Bad("%(process_num) must be present within process_name when "
                                   "numprocs > 1",
                                   "add process_name=%(program_name)s_%(process_num)02d"))

    # What each process would get; identical processes become one app with instances.
    procs: list[dict[str, Any]] = []
    for num in range(numprocs_start, numprocs_start + numprocs):
        exp = {**common, "process_num": num, "numprocs": numprocs}
        try:
            env_text = text("environment", exp)
            env = environment(env_text) if env_text.strip() else {}
        except _Bad as e:
            raise bad("environment", e) from None
        if num == numprocs_start and _mangled(env_text):
            v = opts["environment"]
            shown = ", ".join(f"{k}={val!r}" for k, val in env.items())
            warnings.append(f"{v.file}:{v.line}: {where} environment: an unquoted ? or # ends a "
                            f"value in supervisor; it reads {shown}; put such values in quotes")
        exp.update({f"ENV_{k}": v for k, v in env.items()})
        try:
            name = _name(text("process_name", exp))
        except _Bad as e:
            raise bad("process_name", e) from None
        try:
            maxes = [_byte_size(text(f"{c}_logfile_maxbytes", exp)) for c in ("stdout", "stderr")]
            backups = [_integer(text(f"{c}_logfile_backups", exp)) for c in ("stdout", "stderr")]
        except _Bad as e:
            raise bad("stdout_logfile_maxbytes", e) from None
        procs.append({
            "name": name, "command": text("command", exp), "env": env,
            "directory": text("directory", exp) if "directory" in opts else None,
            "stdout": text("stdout_logfile", exp), "stderr": text("stderr_logfile", exp),
            "maxbytes": maxes, "backups": backups,
        })
    first = procs[0]
    varies = any(p[k] != first[k] for p in procs[1:]
                 for k in ("command", "env", "directory", "stdout", "stderr"))

    argv_cache: dict[str, list[str]] = {}

    def argv_of(p: dict[str, Any]) -> list[str]:
        if p["command"] not in argv_cache:
            v = opts["command"]
            try:
                argv = shlex.split(p["command"])
            except ValueError as e:
                hint = ("supervisor cut this line at an inline comment (a ; or # after a space), "
                        "even inside quotes; move the comment to its own line"
                        if v.cut_comment else "close the quote")
                raise ConfigError(f"{where} command: {e}", hint, file=v.file, line=v.line,
                                  col=v.col) from None
            if not argv:
                raise ConfigError(f"{where} command is empty", "give the program to run",
                                  file=v.file, line=v.line, col=v.col)
            argv_cache[p["command"]] = argv
        return argv_cache[p["command"]]

    out: list[Program] = []
    for p in procs if varies else procs[:1]:
        o, pos = {}, {}
        argv = argv_of(p)
        cwd = p["directory"]
        cwd = os.path.join(here, cwd) if cwd else (default_cwd or here)
        full_env = {**global_env, **p["env"]}
        put("name", p["name"] if varies else program_name,
            "process_name" if varies else "command")
        if "name" not in pos:
            pos["name"] = opts["command"]
        if group is not None:
            put("namespace", group[0], "process_name")
        elif varies:
            put("namespace", program_name, "process_name")
        script = argv[0]
        path_env = full_env.get("PATH") or base_env.get("PATH") or DEFAULT_PATH
        if "/" not in script:
            found = shutil.which(script, path=path_env)
            if found is None:
                v = opts["command"]
                raise ConfigError(f"{where} command: {script!r} is not found on PATH",
                                  f"PATH is {clip(path_env, 200)}; give the full path, or "
                                  "set PATH in environment=", file=v.file, line=v.line, col=v.col)
            script = found
        elif not os.path.isabs(script):
            script = os.path.normpath(os.path.join(default_cwd or os.getcwd(), script))
            v = opts["command"]
            warnings.append(f"{v.file}:{v.line}: {where} command: the relative {argv[0]} is "
                            f"taken as {script}, as supervisord started from "
                            f"{default_cwd or os.getcwd()} would; write the absolute path")
        put("script", script, "command")
        put("args", list(argv[1:]), "command")
        put("exec_interpreter", "none", "command")
        put("cwd", os.path.normpath(cwd), "directory")
        if full_env:
            put("env", full_env, "environment")
        if not varies and numprocs > 1:
            put("instances", numprocs, "numprocs")
        put("autostart", autostart, "autostart")
        if ar == "unexpected":
            put("autorestart", "unexpected", "autorestart")
            put("stop_exit_codes", exitcodes, "exitcodes")
        else:
            put("autorestart", ar in ("yes", "true", "on", "1"), "autorestart")
        put("min_uptime", max(100, startsecs * 1000), "startsecs")
        put("max_restarts", startretries + 1, "startretries")
        put("kill_signal", stopsignal, "stopsignal")
        put("kill_timeout", stopwaitsecs * 1000, "stopwaitsecs")
        # stopasgroup -> the group (pyvm2's default); killasgroup alone -> polite signal to
        # the main pid only. Neither: pyvm2 still stops the whole tree (supervisor orphans it).
        put("treekill", not (killasgroup and not stopasgroup), "stopasgroup")
        if user is not None:
            put("user", user, "user")
        if redirect:
            put("redirect_stderr", True, "redirect_stderr")
        if umask is not None:
            put("umask", umask, "umask")
        for channel, key, src in (("stdout", "out_file", "stdout_logfile"),
                                  ("stderr", "error_file", "stderr_logfile")):
            value = p[channel].strip()
            low = value.lower()
            if channel == "stderr" and redirect:
                continue
            if low in ("none", "off"):
                put(key, "/dev/null", src)
            elif low == "syslog":
                v = opts[src]
                warnings.append(f"{v.file}:{v.line}: {where} {src}=syslog is not supported; "
                                "the default log file is used")
            elif low not in ("auto", ""):
                put(key, os.path.normpath(os.path.join(cwd, value)), src)
        # One rotation setting per app: from the channels that write a file.
        live = [i for i, key in enumerate(("out_file", "error_file"))
                if o.get(key) != "/dev/null" and not (i == 1 and redirect)] or [0]
        maxes = [p["maxbytes"][i] for i in live]
        backups = [p["backups"][i] for i in live]
        if len(set(maxes)) > 1 and "stderr_logfile_maxbytes" in opts:
            v = opts["stderr_logfile_maxbytes"]
            warnings.append(f"{v.file}:{v.line}: {where} pyvm2 has one rotation size for both "
                            f"logs; using the larger ({max(maxes)} bytes)")
        put("log_max_size", size_text(max(maxes)),
            "stdout_logfile_maxbytes" if live[0] == 0 else "stderr_logfile_maxbytes")
        put("log_retain", max(backups),
            "stdout_logfile_backups" if live[0] == 0 else "stderr_logfile_backups")
        put("priority", priority, "priority")
        gprio = group[1] if group else priority
        gname = group[0] if group else program_name
        out.append(Program(o, s, pos, (gprio, gname, priority, o["name"])))
    if not varies and numprocs > 1 and numprocs_start != 0 and "numprocs_start" in opts:
        v = opts["numprocs_start"]
        warnings.append(f"{v.file}:{v.line}: {where} the {numprocs} processes are instances of "
                        f"one app, numbered 0-{numprocs - 1} in NODE_APP_INSTANCE")
    return out
