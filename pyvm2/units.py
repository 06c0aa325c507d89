"""Converters from pm2's option values (sizes, durations, signals, booleans) whose errors name the value."""

from __future__ import annotations

import functools
import json
import math
import re
import signal
from typing import Any

MIB = 1024 * 1024
# A duration past what a 32-bit timer holds (pm2's own ceiling, ~24.8 days) is a typo, not a wish.
MAX_MS = 2**31 - 1

_SIZE_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmg]?)b?\s*$", re.IGNORECASE)

_MS_UNITS = {"": 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_MS_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)

_SECONDS_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*$")

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


class UnitError(ValueError):
    """A value that does not convert; `hint` says what would have worked."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def clip(text: str, limit: int = 120) -> str:
    """`text`, cut with an ellipsis when longer than `limit`, so one bad value cannot flood a terminal."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def visible(text: str) -> str:
    """`text` with control and invisible characters (bidirectional overrides, zero-width marks,
    line separators) written as \\uXXXX, so an error message shows what the value holds."""
    if text.isprintable():
        return text
    import unicodedata

    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
                   else c for c in text)


def show(value: Any) -> str:
    """How a value is quoted in an error message: strings in double quotes, the rest as JSON."""
    if isinstance(value, str):
        return visible(json.dumps(clip(value), ensure_ascii=False))
    try:
        return visible(clip(json.dumps(value, ensure_ascii=False)))
    except (TypeError, ValueError, RecursionError):
        return visible(clip(repr(value)))


def _number(value: Any) -> float | int | None:
    """The value as a finite int/float, or None when it is not a plain number (bools excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _amount(value: Any, pattern: re.Pattern[str], expected: str, hint: str) -> tuple[float, str]:
    """A number and its unit in lower case ("" for a bare number), or UnitError(expected, hint);
    `expected` names the value as {} (filled in only when it is an error)."""
    number = _number(value)
    if number is not None:
        return number, ""
    m = pattern.match(value) if isinstance(value, str) else None
    if m is None:
        raise UnitError(expected.format(show(value)), hint)
    return float(m.group(1)), (m.group(2) or "").lower()


def parse_size(value: Any) -> int:
    """Bytes from 123456789, "100M", "100MB", "1.5G", "512K" (base 1024, case-insensitive)."""
    amount, unit = _amount(value, _SIZE_RE, 'expected a size like "100M", got {}',
                           'use a number of bytes, or K, M or G (base 1024): "512K", "100M", "1.5G"')
    if amount < 0:
        raise UnitError(f"a size cannot be negative, got {show(value)}", 'for example "100M"')
    size = int(round(amount * _SIZE_UNITS[unit]))
    if not unit and size < MIB:
        # pm2 reads a bare number as bytes; a limit that small restarts the app forever.
        raise UnitError(
            f"{show(value)} is {size} bytes, too small for a memory limit",
            f'did you mean "{_plain(amount)}M"? A bare number counts bytes',
        )
    return size


def size_text(n: int) -> str | int:
    """A byte count as parse_size reads it back exactly: "50M", "3K", "0.5K"; 0 stays 0."""
    if n == 0:
        return 0
    for unit, mult in (("G", 1024 * MIB), ("M", MIB), ("K", 1024)):
        if n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n / 1024!r}K"


def _plain(amount: float | int) -> str:
    return str(int(amount)) if float(amount).is_integer() else str(amount)


def parse_ms(value: Any, *, minimum: int = 0) -> int:
    """Milliseconds from 1600, "1600", "500ms", "2s", "1.5s", "1m", "1h"."""
    if isinstance(value, str) and value.strip().startswith("-"):
        amount, unit = -1.0, ""  # "-5s": the pattern takes no sign; reported as negative below
    else:
        amount, unit = _amount(
            value, _MS_RE,
            'expected a duration like 1600 (ms), "500ms", "2s" or "1m", got {}',
            "a bare number counts milliseconds; suffixes: ms, s, m, h")
    if amount < 0:
        raise UnitError(f"a duration cannot be negative, got {show(value)}",
                        'for example 1600 (ms) or "2s"')
    ms = int(round(amount * _MS_UNITS[unit]))
    if ms > MAX_MS:
        raise UnitError(f"{show(value)} is longer than the longest supported duration (24 days)",
                        "a bare number counts milliseconds")
    if ms < minimum:
        raise UnitError(f"{show(value)} is {ms} ms, below the minimum of {minimum} ms",
                        f"use {minimum} or more; a bare number counts milliseconds")
    return ms


def parse_cli_seconds(value: Any) -> int:
    """Milliseconds from a CLI delay given in seconds ("2", "1.5") or with a unit ("500ms", "2s")."""
    seconds: float | int | None = _number(value)
    if seconds is None and isinstance(value, str) and _SECONDS_RE.match(value):
        seconds = float(value)
    if seconds is not None:
        if seconds < 0:
            raise UnitError(f"a delay cannot be negative, got {show(value)}",
                            'for example 2 (seconds) or "500ms"')
        return parse_ms(seconds * 1000)
    if isinstance(value, str) and _MS_RE.match(value) and not value.strip()[-1:].isdigit():
        return parse_ms(value)
    raise UnitError(
        f'expected seconds like 2 or 1.5, or milliseconds like "500ms", got {show(value)}',
        "on the command line a bare number counts seconds",
    )


@functools.cache
def _signals() -> dict[str, int]:
    return {s.name: int(s) for s in signal.Signals if not s.name.startswith("SIG_")}


def parse_signal(value: Any) -> str:
    """The canonical name ("SIGTERM") from "SIGTERM", "TERM", "sigterm" or 15."""
    table = _signals()
    if isinstance(value, int) and not isinstance(value, bool):
        for name, num in table.items():
            if num == value:
                return name
    elif isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return parse_signal(int(text))
        name = text if text.startswith("SIG") else "SIG" + text
        if name in table:
            return name
    raise UnitError(
        f"unknown signal {show(value)}",
        'use a signal name or number, for example "SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP" or 15',
    )


def parse_bool(value: Any) -> bool:
    """A boolean from true/false, or the strings "true"/"false"/"yes"/"no"/"1"/"0"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise UnitError(f"expected true or false, got {show(value)}", "write true or false without quotes")
