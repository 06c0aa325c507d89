"""Error types that carry an exit code, a one-line message and a hint."""

from __future__ import annotations


class Pyvm2Error(Exception):
    """An error the CLI shows as one red line plus a hint, then exits with `code`."""

    code: int = 1

    def __init__(self, message: str, hint: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code


class ConfigError(Pyvm2Error):
    """A bad ecosystem file or bad option value; the message starts with file:line:col."""

    code = 2

    def __init__(self, message: str, hint: str | None = None, *, file: str | None = None,
                 line: int | None = None, col: int | None = None, path: str | None = None) -> None:
        self.file, self.line, self.col, self.path = file, line, col, path
        where = ""
        if file:
            where = file
            if line is not None:
                where += f":{line}"
                if col is not None:
                    where += f":{col}"
            where += ": "
        if path:
            where += f"{path}: "
        super().__init__(where + message, hint)
        self.detail = message


class UsageError(Pyvm2Error):
    """The command line itself is wrong (unknown target, bad flag combination)."""

    code = 1


class NotFound(Pyvm2Error):
    """A target (name, id, namespace) matches no process."""

    code = 1


class DaemonError(Pyvm2Error):
    """The daemon cannot be reached, started, or answered badly."""

    code = 3


class DaemonNotRunning(DaemonError):
    """No daemon answers on the socket (and none was to be started)."""


class SpawnError(Pyvm2Error):
    """A process could not be started (interpreter missing, cwd gone, exec failed)."""

    code = 1
