"""Every restart back-off, as pure decisions (times are passed in, no clock is read): after an exit
(is it unstable, how long to wait, when to give up) and before an automatic restart (which
triggers back off when they repeat soon after a start)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from pyvm2.spec import AppSpec
from pyvm2.status import Status

#: First wait after an unstable exit, growth factor and cap (pm2's exponential back-off numbers).
BACKOFF_BASE_MS = 100
BACKOFF_FACTOR = 1.5
BACKOFF_CAP_MS = 15_000
#: A run this long resets the back-off, as pm2's EXP_BACKOFF_RESET_TIMER does.
BACKOFF_RESET_MS = 30_000
#: An automatic restart that backs off (the memory limit) is immediate the first time; one that
#: comes again sooner than BACKOFF_RESET_MS after its start waits this long, then x1.5, capped.
REPEAT_FIRST_MS = 1000


@dataclass(frozen=True)
class RestartState:
    """What the policy remembers of one instance between its runs."""

    unstable_restarts: int = 0
    prev_delay_ms: int = 0       # the last crash back-off
    repeat_delay_ms: int = 0     # the wait before the next repeat of a trigger that backs off


def forgive(state: RestartState) -> RestartState:
    """A user's start or restart, or a trigger that brings new code or a new period, forgets the
    crash accounting (not the repeat back-off: the memory limit is crossed by the app as run)."""
    return dataclasses.replace(state, unstable_restarts=0, prev_delay_ms=0)


class Trigger(str, Enum):
    """What asked for an automatic restart. Each has one row in RULES."""

    CRON = "cron"
    WATCH = "watch"
    MEMORY = "memory"


@dataclass(frozen=True)
class TriggerRule:
    needs_run: bool   # only a running instance is restarted (else the exit policy decides)
    fresh: bool       # forgets the crash accounting, as a user's restart does
    backs_off: bool   # repeats soon after a start wait (REPEAT_FIRST_MS, x1.5, capped)


RULES: dict[Trigger, TriggerRule] = {
    # a tick also runs a finished periodic task (autorestart: false) again
    Trigger.CRON: TriggerRule(needs_run=False, fresh=True, backs_off=False),
    # changed code: a crashing app whose fix is saved restarts at once, without its back-off
    Trigger.WATCH: TriggerRule(needs_run=False, fresh=True, backs_off=False),
    Trigger.MEMORY: TriggerRule(needs_run=True, fresh=False, backs_off=True),
}


def before_restart(trigger: Trigger, state: RestartState,
                   uptime_ms: float | None) -> tuple[int, RestartState]:
    """How long an automatic restart waits (ms) and the state to keep. `uptime_ms` is how long
    the run it ends was up, None if it ends none. A trigger that backs off restarts at once the
    first time, waits REPEAT_FIRST_MS when it comes again sooner than BACKOFF_RESET_MS after the
    start, then x1.5 up to BACKOFF_CAP_MS; a run of BACKOFF_RESET_MS forgives."""
    if not RULES[trigger].backs_off or uptime_ms is None:
        return 0, state
    if uptime_ms >= BACKOFF_RESET_MS:
        return 0, dataclasses.replace(state, repeat_delay_ms=0)
    delay = state.repeat_delay_ms
    return delay, dataclasses.replace(state,
                                      repeat_delay_ms=next_backoff(delay, REPEAT_FIRST_MS))


@dataclass(frozen=True)
class Decision:
    status: Status             # stopped, errored or waiting restart
    delay_ms: int              # only meaningful with waiting restart
    state: RestartState
    reason: str


def describe_exit(code: int | None, signal_name: str | None) -> str:
    if signal_name:
        return f"killed by {signal_name}"
    if code is None:
        return "exited (status unknown: it was started by a previous daemon)"
    return f"exited with code {code}"


def next_backoff(prev_ms: int, first_ms: int) -> int:
    if prev_ms <= 0:
        return first_ms
    return int(min(BACKOFF_CAP_MS, prev_ms * BACKOFF_FACTOR))


def expected_exit(spec: AppSpec, code: int | None) -> bool:
    """Whether an exit ends the app (its code is in stop_exit_codes). pm2 counts a death by a
    signal (code None) as code 0; under supervisor's autorestart "unexpected" it is unexpected."""
    if code is None:
        return spec.autorestart != "unexpected" and 0 in spec.stop_exit_codes
    return code in spec.stop_exit_codes


def decide(spec: AppSpec, state: RestartState, *, code: int | None, signal_name: str | None,
           uptime_ms: float) -> Decision:
    """What to do after an instance exited on its own (not through a stop)."""
    what = describe_exit(code, signal_name)
    if not spec.autorestart:
        return Decision(Status.STOPPED, 0, state, f"{what} (autorestart is off)")
    if expected_exit(spec, code):
        return Decision(Status.STOPPED, 0, state, f"{what} (listed in stop_exit_codes)")

    prev = 0 if uptime_ms >= BACKOFF_RESET_MS else state.prev_delay_ms
    unstable = uptime_ms < spec.min_uptime
    if not unstable:
        # a stable run forgives earlier unstable exits
        unstable_restarts = 0
    else:
        unstable_restarts = state.unstable_restarts + 1
        if unstable_restarts >= max(spec.max_restarts, 0) and spec.max_restarts >= 0:
            return Decision(Status.ERRORED, 0, forgive(state),
                            f"{what}; too many unstable restarts ({unstable_restarts})")

    if spec.exp_backoff_restart_delay > 0:
        delay = next_backoff(prev, spec.exp_backoff_restart_delay)
        new_prev = delay
    elif unstable:
        backoff = next_backoff(prev, BACKOFF_BASE_MS)
        delay = max(spec.restart_delay, backoff)
        new_prev = backoff
    else:
        delay = spec.restart_delay
        new_prev = prev
    reason = what + (f" after {uptime_ms / 1000:.1f}s (unstable)" if unstable else "")
    return Decision(Status.WAITING_RESTART, int(delay),
                    dataclasses.replace(state, unstable_restarts=unstable_restarts,
                                        prev_delay_ms=new_prev), reason)
