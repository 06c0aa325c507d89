"""cron_restart: validates pm2/croner-style cron patterns and fires a callback at each tick, in local time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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

# The wall clock is read again at least this often while waiting, so a clock step (NTP, manual
# change, suspend) delays a tick by at most this much instead of by the size of the step.
_MAX_SLEEP = 60.0


def _normalize(pattern: str) -> str:
    text = " ".join(pattern.split())
    return text.lower() if text.startswith("@") else text


def validate(pattern: object) -> str | None:
    """None if `pattern` is a usable cron pattern, else one sentence saying what is wrong."""
    if not isinstance(pattern, str) or not pattern.strip():
        return f"the cron pattern is empty; expected {_HINT}"
    text = _normalize(pattern)
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
    it = croniter(_normalize(pattern), datetime.fromtimestamp(after), second_at_beginning=True)
    # Around a fall-back hour a naive local time can map to an epoch at or before `after`;
    # stepping on a few times gets past it.
    for _ in range(8):
        t = time.mktime(it.get_next(datetime).timetuple())
        if t > after:
            return t
    raise ValueError(f"no tick after {after} for {pattern!r}")


class CronJob:
    """Calls `on_tick` on the loop at each time matching `pattern` (local time).

    Robust to the wall clock moving: each wait is at most a minute of loop (monotonic) time, after
    which the wall clock is read again and the next tick recomputed. A loop that wakes late
    (suspend, a clock jump forward) fires once, then aims at the next tick after *now*: missed ticks
    never come as a burst. A clock that steps back never fires the same tick twice.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pattern: str, on_tick: Callable[[], None],
                 *, now: Callable[[], float] = time.time) -> None:
        error = validate(pattern)
        if error is not None:
            raise ValueError(error)
        self._loop = loop
        self.pattern = _normalize(pattern)
        self._on_tick = on_tick
        self._now = now
        self._timer: asyncio.TimerHandle | None = None
        self._next: float | None = None
        self._last: float | None = None

    @property
    def next_at(self) -> float | None:
        """Epoch seconds of the next tick while started, else None."""
        return self._next

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        if self._timer is None:
            self._arm(self._now())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._next = None

    def _arm(self, now: float) -> None:
        base = now if self._last is None else max(now, self._last)
        try:
            self._next = next_tick(self.pattern, base)
        except ValueError:
            self._next = None
            self._timer = None
            return
        delay = min(max(self._next - now, 0.0), _MAX_SLEEP)
        self._timer = self._loop.call_later(delay, self._wake)

    def _wake(self) -> None:
        now = self._now()
        due = self._next is not None and now >= self._next
        if due:
            self._last = self._next
        # Re-arm before the callback, so a callback that stops the job (or raises) leaves it
        # in a consistent state.
        self._arm(now)
        if due:
            self._on_tick()
