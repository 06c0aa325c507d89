"""How an AppSpec is run: the interpreter (explicit, by extension, or from the shebang) and the argv."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyvm2.errors import ConfigError

if TYPE_CHECKING:
    from pyvm2.spec import AppSpec

# Only this much of a script is read to sniff it: enough for a shebang line or a NUL byte.
HEAD_BYTES = 512

# pm2's extension map, except that .py tries python3 first (modern distros ship no `python`).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    ".py": ("python3", "python"),
    ".php": ("php",),
    ".sh": ("bash",),
    ".rb": ("ruby",),
    ".pl": ("perl",),
    ".js": ("node",),
    ".cjs": ("node",),
    ".mjs": ("node",),
    ".ts": ("bun",),
    ".tsx": ("bun",),
}

_INSTALL_HINTS = {
    "php": "on Debian/Ubuntu: apt-get install php-cli",
    "python3": "on Debian/Ubuntu: apt-get install python3",
    "python": "on Debian/Ubuntu: apt-get install python3",
    "node": "install Node.js (https://nodejs.org)",
    "bun": "install bun (https://bun.sh), or set exec_interpreter to \"node\"",
    "ruby": "on Debian/Ubuntu: apt-get install ruby",
    "perl": "on Debian/Ubuntu: apt-get install perl",
    "bash": "on Debian/Ubuntu: apt-get install bash; on Alpine: apk add bash",
}


@dataclass(frozen=True)
class Launch:
    """What to exec: argv[0] is an absolute path; `interpreter` is the name shown to the user."""

    argv: tuple[str, ...]
    interpreter: str
    is_python: bool


def _is_python(name: str) -> bool:
    return "python" in os.path.basename(name).lower()


def _missing(name: str, *, shebang: bool = False) -> ConfigError:
    hint = _INSTALL_HINTS.get(os.path.basename(name))
    hint = f"{hint}; or set exec_interpreter to its full path" if hint else (
        "install it, or set exec_interpreter to its full path")
    where = " (from the script's shebang)" if shebang else ""
    return ConfigError(f"interpreter {_q(name)}{where} is not on PATH", hint)


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _which(name: str, path_env: str | None) -> str | None:
    try:
        found = shutil.which(name, path=path_env)
    except (OSError, ValueError):
        return None
    return os.path.abspath(found) if found else None


def _check_executable(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"{what} not found: {path}",
                          "check the path; a relative path counts from the app's cwd")
    if os.path.isdir(path):
        raise ConfigError(f"{what} is a directory: {path}", "point it at a file")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"{what} is not executable: {path}", f"chmod +x {shlex.quote(path)}")


def _locate(word: str, spec: AppSpec, path_env: str | None) -> str:
    """An interpreter's absolute path: a path (relative to the app's cwd) or a name on PATH."""
    if "/" in word or word.startswith("~"):
        path = os.path.normpath(os.path.join(spec.cwd, os.path.expanduser(word)))
        _check_executable(path, f"interpreter {_q(word)}")
        return path
    found = _which(word, path_env)
    if not found:
        raise _missing(word)
    return found


def _explicit(spec: AppSpec, path_env: str | None) -> tuple[str, tuple[str, ...]]:
    """The absolute interpreter path and any arguments written inside exec_interpreter itself."""
    given = spec.interpreter or ""
    if not given.strip():
        raise ConfigError("exec_interpreter is empty", 'remove it, or name one such as "python3"')
    try:
        return _locate(given, spec, path_env), ()
    except ConfigError:
        # "python3 -u" or "scl enable x -- node": a command with arguments, not a file name.
        try:
            words = shlex.split(given)
        except ValueError:
            words = []
        if len(words) < 2:
            raise
    return _locate(words[0], spec, path_env), tuple(words[1:])


def _read_head(script: str) -> bytes:
    try:
        if not stat.S_ISREG(os.stat(script).st_mode):
            # Opening a FIFO or a terminal would block; a device is no script anyway.
            raise ConfigError(f"script is not a regular file: {script}", "point script at a file")
        with open(script, "rb") as f:
            return f.read(HEAD_BYTES)
    except OSError as e:
        raise ConfigError(f"cannot read script {script}: {e.strerror or e}",
                          "check that the file exists and is readable") from None


def _shebang(head: bytes) -> tuple[str, str] | None:
    """(interpreter, optional single argument) split the way the kernel splits a `#!` line."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].rstrip(b"\r")
    text = line.decode("utf-8", "replace").strip()
    if not text:
        return None
    parts = text.split(None, 1)
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _env_program(arg: str) -> list[str]:
    """The command an `#!/usr/bin/env [-S] prog args` line runs, without env's own options."""
    words = arg.split()
    while words and (words[0].startswith("-") or "=" in words[0]):
        words.pop(0)
    return words


def _program(bang: tuple[str, str]) -> str:
    """The program a shebang runs, seeing through /usr/bin/env."""
    interp, arg = bang
    if os.path.basename(interp) == "env":
        words = _env_program(arg)
        return words[0] if words else interp
    return interp


def _from_shebang(spec: AppSpec, interp: str, arg: str,
                  path_env: str | None) -> tuple[str, tuple[str, ...], str]:
    """(absolute interpreter, its arguments, display name) for running a non-executable script."""
    if os.path.basename(interp) == "env" and arg:
        words = _env_program(arg)
        if not words:
            raise ConfigError(f"cannot tell how to run {spec.script}: its shebang names no program",
                              'set exec_interpreter (for example "php" or "python3")')
        found = _which(words[0], path_env) if "/" not in words[0] else words[0]
        if not found or not os.access(found, os.X_OK):
            raise _missing(words[0], shebang=True)
        return found, tuple(words[1:]), os.path.basename(words[0])
    if not os.path.isabs(interp):
        raise ConfigError(f"the shebang of {spec.script} names a relative interpreter {_q(interp)}",
                          "use an absolute path in the #! line, or set exec_interpreter")
    if not (os.path.isfile(interp) and os.access(interp, os.X_OK)):
        raise ConfigError(f"interpreter {_q(interp)} (from the script's shebang) is not installed",
                          "install it, or set exec_interpreter")
    return interp, ((arg,) if arg else ()), os.path.basename(interp)


def _script_arg(spec: AppSpec) -> str:
    """How the interpreter is told the script: relative to cwd when it lives there, as the user
    would type it (`php symfony ...`), so the app's own argv[0] is what it expects."""
    try:
        rel = os.path.relpath(spec.script, spec.cwd)
    except ValueError:
        return spec.script
    if rel.startswith(os.pardir) or os.path.isabs(rel) or rel == os.curdir:
        return spec.script
    return rel


def resolve_launch(spec: AppSpec, path_env: str | None) -> Launch:
    """The argv for `spec`, looking interpreters up on `path_env` (None = this process's PATH).

    Raises ConfigError (without file/line; the caller adds where the option came from) when the
    interpreter is missing or the script cannot be run.
    """
    script = spec.script
    given = spec.interpreter
    if given is not None and given.strip().lower() == "none":
        _check_executable(script, "script")
        bang = _shebang(_read_head(script))
        return Launch((script, *spec.args), "none", bang is not None and _is_python(_program(bang)))

    if not os.path.exists(script):
        raise ConfigError(f"script not found: {script}", "check the path and the app's cwd")
    if os.path.isdir(script):
        raise ConfigError(f"script is a directory: {script}", "point script at a file inside it")

    if given is not None:
        interp, pre = _explicit(spec, path_env)
        argv = (interp, *pre, *spec.interpreter_args, _script_arg(spec), *spec.args)
        return Launch(argv, given, _is_python(interp) or _is_python(given.split()[0]))

    ext = os.path.splitext(os.path.basename(script))[1].lower()
    candidates = EXTENSIONS.get(ext)
    if candidates:
        for name in candidates:
            found = _which(name, path_env)
            if found:
                argv = (found, *spec.interpreter_args, _script_arg(spec), *spec.args)
                return Launch(argv, name, _is_python(name))
        raise _missing(candidates[0])

    head = _read_head(script)
    if b"\0" in head:
        _check_executable(script, "script")
        return Launch((script, *spec.args), "none", False)
    bang = _shebang(head)
    if bang:
        if os.access(script, os.X_OK):
            return Launch((script, *spec.args), "none", _is_python(_program(bang)))
        path, pre, display = _from_shebang(spec, *bang, path_env)
        argv = (path, *pre, *spec.interpreter_args, _script_arg(spec), *spec.args)
        return Launch(argv, display, _is_python(display))
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:5].lower() == b"<?php":
        found = _which("php", path_env)
        if not found:
            raise _missing("php")
        return Launch((found, *spec.interpreter_args, _script_arg(spec), *spec.args), "php", False)
    # pm2 runs every other script with node; so does pyvm2 where node is installed
    found = _which("node", path_env)
    if found:
        return Launch((found, *spec.interpreter_args, _script_arg(spec), *spec.args), "node", False)
    what = f'unknown extension "{ext}"' if ext else "no extension"
    raise ConfigError(f"cannot tell how to run {script}: {what}, no shebang, and node (which "
                      "pm2 would use) is not installed",
                      'set exec_interpreter (for example "node", "php" or "python3")')
