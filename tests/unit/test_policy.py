"""Restart decisions, driven with scripted exit histories (no processes, no clock)."""

from __future__ import annotations

from pyvm2.daemon import policy
from pyvm2.daemon.policy import RestartState, decide
from pyvm2.spec import AppSpec
from pyvm2.status import Status


def spec(**kw) -> AppSpec:
    return AppSpec(name="a", script="/bin/true", cwd="/", **kw)


def run_history(s: AppSpec, uptimes_ms: list[float], code: int = 1) -> list[policy.Decision]:
    state = RestartState()
    out = []
    for up in uptimes_ms:
        d = decide(s, state, code=code, signal_name=None, uptime_ms=up)
        out.append(d)
        state = d.state
        if d.status != Status.WAITING_RESTART:
            break
    return out


def test_unstable_exits_back_off_by_half_from_100ms_even_with_restart_delay_zero():
    ds = run_history(spec(restart_delay=0), [10] * 8)
    assert [d.delay_ms for d in ds] == [100, 150, 225, 337, 505, 757, 1135, 1702]


def test_back_off_is_capped_at_15_seconds():
    ds = run_history(spec(max_restarts=100), [10] * 40)
    assert max(d.delay_ms for d in ds) == 15_000
    assert ds[-1].delay_ms == 15_000


def test_unstable_exits_end_errored_after_max_restarts():
    ds = run_history(spec(max_restarts=3), [10] * 10)
    assert [d.status for d in ds] == [Status.WAITING_RESTART, Status.WAITING_RESTART, Status.ERRORED]
    assert "too many unstable restarts (3)" in ds[-1].reason


def test_default_max_restarts_gives_sixteen_starts_then_errored():
    ds = run_history(spec(), [10] * 40)
    assert len(ds) == 16 and ds[-1].status == Status.ERRORED


def test_max_restarts_zero_errors_on_first_unstable_exit():
    ds = run_history(spec(max_restarts=0), [10])
    assert ds[0].status == Status.ERRORED


def test_a_stable_run_restarts_at_once_and_forgives_unstable_exits():
    s = spec(max_restarts=3)
    ds = run_history(s, [10, 10, 5_000, 10, 10, 10])
    assert [d.status for d in ds] == [Status.WAITING_RESTART] * 5 + [Status.ERRORED]
    assert ds[2].delay_ms == 0
    assert ds[2].state.unstable_restarts == 0


def test_a_run_of_thirty_seconds_resets_the_back_off():
    s = spec(max_restarts=100)
    ds = run_history(s, [10] * 6 + [31_000, 10])
    assert ds[5].delay_ms == 757
    assert ds[7].delay_ms == 100


def test_restart_delay_applies_to_stable_exits_and_floors_unstable_ones():
    ds = run_history(spec(restart_delay=2000, max_restarts=50), [5_000, 10, 10])
    assert [d.delay_ms for d in ds] == [2000, 2000, 2000]


def test_exp_backoff_restart_delay_grows_from_its_own_base():
    ds = run_history(spec(exp_backoff_restart_delay=100, max_restarts=50), [5_000] * 6)
    assert [d.delay_ms for d in ds] == [100, 150, 225, 337, 505, 757]


def test_autorestart_false_stops_and_keeps_the_exit():
    d = decide(spec(autorestart=False), RestartState(), code=0, signal_name=None, uptime_ms=10)
    assert d.status == Status.STOPPED and "autorestart" in d.reason


def test_stop_exit_codes_stop_and_a_signal_counts_as_code_zero():
    s = spec(stop_exit_codes=(0,))
    assert decide(s, RestartState(), code=0, signal_name=None, uptime_ms=5000).status == Status.STOPPED
    assert decide(s, RestartState(), code=None, signal_name="SIGTERM", uptime_ms=5000).status == Status.STOPPED
    assert decide(s, RestartState(), code=1, signal_name=None, uptime_ms=5000).status == Status.WAITING_RESTART


def test_exit_is_described_with_code_or_signal():
    assert policy.describe_exit(3, None) == "exited with code 3"
    assert policy.describe_exit(None, "SIGKILL") == "killed by SIGKILL"
