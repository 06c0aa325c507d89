"""cron_restart patterns: validation, next tick in local time, ticking on a loop, clock steps."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from pyvm2.daemon import cron
from pyvm2.daemon.cron import CronJob, next_tick, validate


def local(*fields: float) -> float:
    """Epoch seconds of a local wall-clock time (year, month, day, hour, minute, second)."""
    y, mo, d, h, mi, s = (list(fields) + [0] * 6)[:6]
    whole = time.mktime((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, -1))
    return whole + (s - int(s))


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in America/New_York (so local time is not UTC) and restore the zone afterwards."""
    if not os.path.exists("/usr/share/zoneinfo/America/New_York"):
        pytest.skip("no tz database")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("pattern", [
    "0 3 * * *", "*/1 * * * * *", "30 0 3 * * mon-fri", "@daily", "@HOURLY", "  0  3 * * * ",
    "0 9 * * 1#2", "*/15 9-17 * jan-jun 1-5",
])
def test_valid_patterns(pattern: str) -> None:
    assert validate(pattern) is None


@pytest.mark.parametrize(("pattern", "says"), [
    ("", "the cron pattern is empty"),
    (None, "the cron pattern is empty"),
    ("* * * *", "has 4 fields; expected 5 fields"),
    ("0 0 3 * * * 2024", "has 7 fields"),
    ("61 * * * *", "the minute field '61' is not valid (allowed: 0-59)"),
    ("0 60 * * * *", "the minute field '60' is not valid"),
    ("60 * * * * *", "the second field '60' is not valid"),
    ("0 24 * * *", "the hour field '24'"),
    ("* * * * 8", "the day of week field '8'"),
    ("*/0 * * * *", "the minute field '*/0'"),
    ("0 0 31 2 *", "never matches a date"),
    ("@reboot", "unknown cron shortcut '@reboot'"),
])
def test_invalid_patterns_get_a_sentence_naming_the_problem(pattern: object, says: str) -> None:
    error = validate(pattern)
    assert error is not None and says in error, error


def test_an_invalid_pattern_cannot_make_a_job() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="the hour field '25'"):
            CronJob(loop, "0 25 * * *", lambda: None)
    finally:
        loop.close()


def test_next_tick_is_in_local_time(timezone: None) -> None:
    after = local(2024, 1, 10, 2, 59, 30)
    t = next_tick("0 3 * * *", after)
    assert t == local(2024, 1, 10, 3, 0, 0)
    assert time.gmtime(t).tm_hour == 8  # 03:00 in New York in January is 08:00 UTC
    assert next_tick("0 3 * * *", t) == local(2024, 1, 11, 3)
    assert next_tick("*/10 * * * * *", local(2024, 1, 10, 2, 59, 30.5)) == local(2024, 1, 10, 2, 59, 40)


def test_a_tick_in_the_spring_forward_gap_happens_once_after_it(timezone: None) -> None:
    # 2024-03-10 02:30 does not exist in New York: clocks go from 02:00 to 03:00.
    t = next_tick("30 2 * * *", local(2024, 3, 9, 12))
    assert time.localtime(t)[:5] == (2024, 3, 10, 3, 30)
    assert time.localtime(next_tick("30 2 * * *", t))[:5] == (2024, 3, 11, 2, 30)


def test_a_job_aims_at_the_next_tick_from_its_clock(timezone: None) -> None:
    loop = asyncio.new_event_loop()
    try:
        job = CronJob(loop, "*/10 * * * * *", lambda: None, now=Clock(local(2024, 1, 10, 2, 59, 31)))
        assert job.next_at is None
        job.start()
        assert job.next_at == local(2024, 1, 10, 2, 59, 40)
        job.stop()
        assert job.next_at is None and not job.running
    finally:
        loop.close()


@pytest.mark.timeout(60)
def test_a_seconds_pattern_ticks_every_second_and_stop_ends_it() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        ticks: list[float] = []
        job = CronJob(loop, "*/1 * * * * *", lambda: ticks.append(time.time()))
        job.start()
        # due on the second, not 1 s after start (when it runs depends on the machine's load)
        assert job.next_at is not None and job.next_at % 1 == 0, job.next_at
        deadline = time.monotonic() + 20
        while len(ticks) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(ticks) >= 2, ticks
        assert len({int(t) for t in ticks}) == len(ticks), ticks  # never twice in one second
        job.stop()
        seen = len(ticks)
        await asyncio.sleep(1.2)  # a fixed window longer than the tick period
        assert len(ticks) == seen

    asyncio.run(body())


def test_clock_steps_neither_burst_nor_repeat_ticks(monkeypatch: pytest.MonkeyPatch, timezone: None) -> None:
    # Re-read the (fake) wall clock every 20 ms instead of every minute, so steps are seen at once.
    monkeypatch.setattr(cron, "_MAX_SLEEP", 0.02)
    window = 0.2  # ten re-reads of the clock: enough for a wrong tick to have fired

    async def body() -> None:
        clock = Clock(local(2024, 1, 10, 10, 59, 59))
        ticks: list[float] = []
        job = CronJob(asyncio.get_running_loop(), "0 * * * *", lambda: ticks.append(clock.t), now=clock)
        job.start()
        assert job.next_at == local(2024, 1, 10, 11)

        clock.t = local(2024, 1, 10, 10)          # stepped back an hour: wait for 11:00 again
        await asyncio.sleep(window)
        assert ticks == [] and job.next_at == local(2024, 1, 10, 11)

        clock.t = local(2024, 1, 10, 11, 0, 0.01)  # 11:00 reached
        await asyncio.sleep(window)
        assert ticks == [clock.t] and job.next_at == local(2024, 1, 10, 12)

        clock.t = local(2024, 1, 10, 10, 59, 59)  # stepped back across the tick just fired
        await asyncio.sleep(window)
        assert len(ticks) == 1 and job.next_at == local(2024, 1, 10, 12)

        clock.t = local(2024, 1, 10, 13, 30)      # a suspend over two ticks: one tick, no burst
        await asyncio.sleep(window)
        assert len(ticks) == 2 and job.next_at == local(2024, 1, 10, 14)
        job.stop()

    asyncio.run(body())
