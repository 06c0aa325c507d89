"""Pure restart decisions: is an exit unstable, how long to wait, when to give up."""

from __future__ import annotations

from dataclasses import dataclass

from pyvm2.spec import AppSpec
from pyvm2.status import Status

#: First wait after an unstable exit, growth factor and cap (pm2's exponential back-off numbers).
BACKOFF_BASE_MS = 100
BACKOFF_FACTOR = 1.5
BACKOFF_CAP_MS = 15_000
#: A run this long resets the back-off, as pm2's EXP_BACKOFF_RESET_TIMER does.
BACKOFF_RESET_MS = 30_000


@dataclass(frozen=True)
class RestartState:
    """What the policy remembers between exits of one instance."""

    unstable_restarts: int = 0
    prev_delay_ms: int = 0


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


def decide(spec: AppSpec, state: RestartState, *, code: int | None, signal_name: str | None,
           uptime_ms: float) -> Decision:
    """What to do after an instance exited on its own (not through a stop)."""
    what = describe_exit(code, signal_name)
    # pm2 counts a signal death as exit code 0 for stop_exit_codes; supervisor's "unexpected"
    # counts it as unexpected.
    effective_code = (None if spec.autorestart_unexpected else 0) if code is None else code
    if not spec.autorestart:
        return Decision(Status.STOPPED, 0, state, f"{what} (autorestart is off)")
    if effective_code is not None and effective_code in spec.stop_exit_codes:
        return Decision(Status.STOPPED, 0, state, f"{what} (listed in stop_exit_codes)")

    prev = 0 if uptime_ms >= BACKOFF_RESET_MS else state.prev_delay_ms
    unstable = uptime_ms < spec.min_uptime
    if not unstable:
        # a stable run forgives earlier unstable exits
        unstable_restarts = 0
    else:
        unstable_restarts = state.unstable_restarts + 1
        if unstable_restarts >= max(spec.max_restarts, 0) and spec.max_restarts >= 0:
            return Decision(Status.ERRORED, 0, RestartState(0, 0),
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
    return Decision(Status.WAITING_RESTART, int(delay), RestartState(unstable_restarts, new_prev),
                    reason)
