"""cron_restart: fires a callback at each time a cron pattern matches, in local time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pyvm2.cronexpr import next_tick, normalize, validate

__all__ = ["CronJob", "next_tick", "validate"]

# The wall clock is read again at least this often while waiting, so a clock step (NTP, manual
# change, suspend) delays a tick by at most this much instead of by the size of the step.
_MAX_SLEEP = 60.0


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
        self.pattern = normalize(pattern)
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
