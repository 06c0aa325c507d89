"""Error types that carry an exit code, a one-line message and a hint."""

from __future__ import annotations

from collections.abc import Sequence


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


class ConfigErrors(ConfigError):
    """Several problems at once, all in `errors`: the CLI shows each (up to a bound) and the
    count; as one error (the web API, the runtime), it is the first, with the count in the hint."""

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
