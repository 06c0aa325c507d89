"""Cron patterns as pm2 (croner) reads them: the one validator, used by the CLI and the daemon,
and the next matching time in local time."""

from __future__ import annotations

import time
from datetime import datetime

from croniter import croniter

# A pattern is 5 fields, or 6 with seconds first as pm2's croner reads it (croniter would put
# seconds last unless told otherwise). croniter also takes a 7th "year" field that croner
# does not, so the field count is checked here before croniter sees the pattern.
_FIELDS_5 = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31"),
             ("month", "1-12 or jan-dec"), ("day of week", "0-7 or sun-sat"))
_FIELDS_6 = (("second", "0-59"), *_FIELDS_5)
_NICKNAMES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                        "@hourly"})
_HINT = '5 fields (minute hour day month weekday) or 6 with seconds first, like "0 3 * * *"'


def normalize(pattern: str) -> str:
    """Single spaces; shortcuts (@daily) in lower case."""
    text = " ".join(pattern.split())
    return text.lower() if text.startswith("@") else text


def validate(pattern: object) -> str | None:
    """None if `pattern` is a usable cron pattern, else one sentence saying what is wrong."""
    if not isinstance(pattern, str) or not pattern.strip():
        return f"the cron pattern is empty; expected {_HINT}"
    text = normalize(pattern)
    if text.startswith("@"):
        if text in _NICKNAMES:
            return None
        return f"unknown cron shortcut {text!r}; use one of {', '.join(sorted(_NICKNAMES))}"
    fields = text.split()
    if len(fields) not in (5, 6):
        return f"cron pattern {text!r} has {len(fields)} fields; expected {_HINT}"
    names = _FIELDS_6 if len(fields) == 6 else _FIELDS_5
    # Try each field alone so the sentence can name the culprit rather than repeat croniter's.
    for i, (name, allowed) in enumerate(names):
        probe = ["*"] * len(fields)
        probe[i] = fields[i]
        if not croniter.is_valid(" ".join(probe), second_at_beginning=True):
            return f"cron pattern {text!r}: the {name} field {fields[i]!r} is not valid (allowed: {allowed})"
    if not croniter.is_valid(text, second_at_beginning=True):
        return f"invalid cron pattern {text!r}; expected {_HINT}"
    try:
        next_tick(text, time.time())
    except ValueError:
        return f"cron pattern {text!r} never matches a date (for example the 31st of February)"
    return None


def next_tick(pattern: str, after: float) -> float:
    """The first time (epoch seconds) strictly after `after` that matches `pattern`, in local time.

    croniter works on naive local datetimes; `time.mktime` turns the result back into an epoch
    with the local daylight-saving rules (a time inside a spring-forward gap moves to after it).
    Raises ValueError if the pattern never matches.
    """
    it = croniter(normalize(pattern), datetime.fromtimestamp(after), second_at_beginning=True)
    # Around a fall-back hour a naive local time can map to an epoch at or before `after`;
    # stepping on a few times gets past it.
    for _ in range(8):
        t = time.mktime(it.get_next(datetime).timetuple())
        if t > after:
            return t
    raise ValueError(f"no tick after {after} for {pattern!r}")
