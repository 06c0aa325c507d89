"""What an option's value may be: text, whole numbers, word lists, paths, cron patterns, and so on.

Each converter takes the value as written (JSON/YAML data or a CLI string) and returns what the
AppSpec holds, or raises UnitError with a hint.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from typing import Any

from pyvm2.units import UnitError, clip, parse_size, show

# `log_file: true`: the daemon puts the combined log at its default place, <logs>/<name>.log.
# Not an absolute path, so it can never collide with a real (always absolute) log path.
LOG_FILE_DEFAULT = "<default>"
TIME_FORMAT = "YYYY-MM-DDTHH:mm:ss"
MAX_INSTANCES = 1024


def parse_log_size(value: Any) -> int:
    """A rotation limit: a size like "10M", or 0/false to never rotate."""
    if value is False or value == 0 or (isinstance(value, str) and value.strip() in ("0", "false")):
        return 0
    return parse_size(value)


def string(value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise UnitError(f"expected {what}, got {show(value)}", "write it as a string in quotes")
    clean(value)
    return value


def clean(value: str) -> str:
    if "\0" in value:
        raise UnitError(f"{show(value)} contains a NUL character", "remove the \\u0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnitError(f"{show(value)} is not valid text (lone surrogate)",
                        "remove the \\ud800-\\udfff escape") from None
    return value


def whole(value: Any, what: str) -> int:
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


def words(value: Any, what: str) -> tuple[str, ...]:
    """A list as strings, or a string split like a POSIX shell would split it."""
    if isinstance(value, str):
        clean(value)
        try:
            return tuple(shlex.split(value))
        except ValueError:
            raise UnitError(f"unbalanced quotes in {show(value)}",
                            f"close the quote, or write {what} as a list") from None
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(clean(item))
            elif isinstance(item, bool):
                out.append("true" if item else "false")
            elif isinstance(item, (int, float)):
                out.append(js_number(item))
            else:
                raise UnitError(f"{what} must be strings, got {show(item)}",
                                f'write {what} as ["a", "b"] or "a b"')
        return tuple(out)
    raise UnitError(f"expected {what} as a list or a string, got {show(value)}",
                    f'write {what} as ["a", "b"] or "a b"')


def js_number(value: int | float) -> str:
    """How JavaScript prints a number, so env values match what pm2 would pass."""
    if isinstance(value, float):
        if value.is_integer() and math.isfinite(value) and abs(value) < 1e21:
            return str(int(value))
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return str(value)



def check_var(name: str) -> str:
    if not name or "=" in name:
        raise UnitError(f"{show(name)} is not a usable variable name",
                        'a name cannot be empty or contain "="')
    return name



def check_name(value: str, what: str) -> str:
    if not value.strip():
        raise UnitError(f"{what} is empty", f"give the app a {what} such as \"api\"")
    if value.strip().isdigit():
        raise UnitError(f"{what} {show(value)} is only digits",
                        "it would be confused with a process id; use something like \"app-"
                        f"{value.strip()}\"")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UnitError(f"{what} {show(value)} contains a control character",
                        "use letters, digits, spaces and - _ . :")
    if what == "name" and value == "all":
        raise UnitError('name "all" is reserved', '"all" means every app on the command line')
    return value


def expand(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def log_path(value: Any, cwd: str, *, allow_true: bool = False) -> str | None:
    if value is False:
        return None
    if value is True and allow_true:
        return LOG_FILE_DEFAULT
    text = string(value, "a file path")
    if allow_true and text == LOG_FILE_DEFAULT:
        return text
    if text in ("NULL", "/dev/null"):
        return "/dev/null"
    if not text.strip():
        raise UnitError("the path is empty", "remove the option to use the default file")
    return expand(text, cwd)


def cron(value: Any) -> str | None:
    """A cron pattern, checked by the validator the daemon uses too; 0 disables it."""
    if value in (0, "0") and not isinstance(value, bool):
        return None
    text = string(value, 'a cron pattern like "0 3 * * *"')
    from pyvm2.cronexpr import normalize, validate

    problem = validate(text)
    if problem is not None:
        raise UnitError(problem, '5 fields (minute hour day month weekday) or 6 with seconds '
                                 'first, for example "0 3 * * *" (03:00 every day); 0 disables it')
    return normalize(text)


def account(value: Any, *, group: bool = False) -> str | None:
    """The user (or group) to run an app as, by name or id; None when it is the daemon's own (the
    CLI runs as the daemon's user: the socket admits no other). Running as another account needs
    a root daemon, which the daemon checks at its door (an app is refused before anything starts);
    here only the account's existence is checked, so `convert` works for anyone."""
    import grp
    import pwd

    what = "group" if group else "user"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UnitError(f"expected a {what} name or id, got {show(value)}",
                        'write it as "www-data" or 33')
    text = str(value).strip()
    entry: Any
    try:
        if text.isdigit():
            entry = grp.getgrgid(int(text)) if group else pwd.getpwuid(int(text))
        else:
            entry = grp.getgrnam(text) if group else pwd.getpwnam(text)
    except (KeyError, OverflowError):
        raise UnitError(f"no such {what} {show(text)} on this machine",
                        f"create it ({'groupadd' if group else 'useradd'}), or change the "
                        f"app's {what}") from None
    name, ident = (entry.gr_name, entry.gr_gid) if group else (entry.pw_name, entry.pw_uid)
    mine = os.getegid() if group else os.geteuid()
    if ident == mine and not (group and os.geteuid() == 0):
        return None
    return str(name)


def umask(value: Any) -> int:
    """An umask from octal text ("002", "0o22") or a number."""
    if isinstance(value, str) and re.fullmatch(r"\s*(0o)?[0-7]{1,4}\s*", value):
        n = int(value.strip().removeprefix("0o"), 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        raise UnitError(f"expected an octal umask such as \"022\", got {show(value)}",
                        'write it as a string of octal digits: "002", "022", "077"')
    if not 0 <= n <= 0o777:
        raise UnitError(f"umask {show(value)} is out of range", 'for example "022"')
    return n


def instances(value: Any) -> tuple[int, int]:
    """(count, as written): "max" and 0 are one per CPU, -n is all CPUs but n (at least 1)."""
    expected = f'expected a whole number of instances or "max", got {show(value)}'
    hint = 'for example 2, "max" (one per CPU) or -1 (all CPUs but one)'
    if isinstance(value, str) and value.strip().lower() == "max":
        n = 0
    else:
        try:
            n = whole(value, "")
        except UnitError:
            raise UnitError(expected, hint) from None
    cpus = os.cpu_count() or 1
    count = cpus if n == 0 else max(1, cpus + n) if n < 0 else n
    if count > MAX_INSTANCES:
        raise UnitError(f"{show(value)} instances is more than {MAX_INSTANCES}", hint)
    return count, n


def exec_mode(value: Any) -> str:
    text = string(value, '"fork" or "cluster"').strip().lower()
    mode = text.removesuffix("_mode")
    if mode not in ("fork", "cluster"):
        raise UnitError(f'expected "fork" or "cluster", got {show(value)}',
                        '"cluster" runs `instances` copies; both run each copy as its own process')
    return mode


def stop_exit_codes(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    codes = []
    for item in items:
        code = whole(item, "exit codes (whole numbers 0-255)")
        if not 0 <= code <= 255:
            raise UnitError(f"exit code {code} is outside 0-255", "exit codes are 0 to 255")
        codes.append(code)
    return tuple(codes)


def watch(value: Any, cwd: str) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    paths = words([value] if isinstance(value, str) else value, "watch paths")
    if not paths:
        return True  # pm2: an empty list watches the app's cwd
    return tuple(expand(p, cwd) for p in paths)


def filter_env(value: Any) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    names = words([value] if isinstance(value, str) else value, "filter_env names")
    return names or False


def env_file(value: Any, cwd: str) -> dict[str, str]:
    """The variables of a dotenv file (`env_file`, relative to the app's cwd), read now.

    python-dotenv's syntax: `NAME=value`, `export NAME=value`, quotes, `# comments` and
    `${NAME}` from the file or the shell starting pyvm2. A line it cannot read is an error.
    """
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    path = expand(string(value, "a file path"), cwd)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read(1024 * 1024 + 1)
    except FileNotFoundError:
        raise UnitError(f"env_file not found: {path}",
                        f"a relative env_file counts from the app's cwd ({cwd})") from None
    except IsADirectoryError:
        raise UnitError(f"env_file is a directory: {path}", "point it at a dotenv file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UnitError(f"cannot read env_file {path}: {getattr(e, 'strerror', None) or e}",
                        "save it as UTF-8 text readable by you") from None
    if len(text) > 1024 * 1024:
        raise UnitError(f"env_file {path} is larger than 1 MiB", "is this the right file?")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.string.strip()
            raise UnitError(f"{path}:{binding.original.line}: cannot read {show(clip(line, 60))}",
                            "a dotenv line looks like NAME=value (quote values with spaces)")
    out: dict[str, str] = {}
    for name, text_value in dotenv_values(stream=io.StringIO(text)).items():
        if text_value is not None:  # a bare NAME sets nothing, as in python-dotenv
            out[check_var(clean(name))] = clean(text_value)
    return out
