"""Terminal text: whether to colour, ANSI colour codes, escaping untrusted text, status colours.

Standard library only and cheap to import: `pyvm2 list` loads it on its fast path.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from typing import Any

from pyvm2.status import Status

__all__ = [
    "NOT_RUNNING",
    "RESET",
    "STATUS_STYLES",
    "escape_controls",
    "paint",
    "sgr",
    "status_style",
    "use_color",
]

RESET = "\x1b[0m"

#: rich style for each status, as pm2 colours them (UX/helpers.js colorStatus).
STATUS_STYLES: dict[str, str] = {
    Status.ONLINE.value: "bold green",
    Status.LAUNCHING.value: "bold blue",
    Status.STOPPING.value: "bold red",
    Status.STOPPED.value: "bold red",
    Status.WAITING_RESTART.value: "bold red",
    Status.ERRORED.value: "bold red",
}
# pm2's colorStatus falls through to red for anything it does not know.
_UNKNOWN_STATUS_STYLE = "bold red"

#: Statuses in which no process exists: pid, cpu and memory are meaningless, pm2 shows 0.
NOT_RUNNING = frozenset({Status.STOPPED.value, Status.ERRORED.value, Status.WAITING_RESTART.value})


def status_style(status: str | None) -> str:
    """The style a status is shown in; no style for a missing status, red for an unknown one."""
    if status is None:
        return ""
    return STATUS_STYLES.get(status, _UNKNOWN_STATUS_STYLE)


#: `--no-color` was given (kept here, not in the NO_COLOR variable, so that apps started by this
#: command do not inherit it).
NO_COLOR = False


def use_color(stream: Any = None) -> bool:
    """Whether to colour what goes to `stream` (stdout by default): --no-color, NO_COLOR,
    FORCE_COLOR, a tty."""
    stream = stream or sys.stdout
    if NO_COLOR or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


#: Shown escaped: controls, format characters (bidirectional overrides, zero-width marks) and
#: line or paragraph separators.
_ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp"})


def escape_controls(text: str) -> str:
    """`text` with control and invisible characters shown escaped (``\\n``, ``\\x1b``,
    ``\\u202e``).

    Names, paths and reasons come from users: a newline would break a table, an escape sequence
    could move the cursor or leak colour into output that must have none, and a bidirectional
    override (U+202E) would show a name reversed."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _ESCAPED
        else ch for ch in text
    )


_SGR_ATTRIBUTES = {
    "bold": "1",
    "dim": "2",
    "italic": "3",
    "underline": "4",
    "blink": "5",
    "reverse": "7",
    "strike": "9",
}
_SGR_COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
_sgr_cache: dict[str, str] = {}


def sgr(style: str) -> str:
    """The escape sequence for a rich-style name (``"bold green"``, ``"bright_black"``).

    rich itself is too slow to import for `pyvm2 list`; this covers the names pyvm2 uses."""
    sequence = _sgr_cache.get(style)
    if sequence is None:
        attributes: list[str] = []
        colours: list[str] = []
        base = 30
        for word in style.split():
            if word == "on":
                base = 40
            elif word in _SGR_ATTRIBUTES:
                attributes.append(_SGR_ATTRIBUTES[word])
            else:
                bright = word.startswith("bright_")
                colour = word[7:] if bright else word
                if colour in _SGR_COLOURS:
                    colours.append(str(base + 60 * bright + _SGR_COLOURS.index(colour)))
        codes = sorted(attributes) + colours
        sequence = f"\x1b[{';'.join(codes)}m" if codes else ""
        _sgr_cache[style] = sequence
    return sequence


def paint(text: str, style: str, color: bool) -> str:
    """`text` in a rich-style name's colours when `color` is on, else unchanged."""
    if not color or not style:
        return text
    return f"{sgr(style)}{text}{RESET}"
