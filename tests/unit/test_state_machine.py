"""The instance state machine (ManagedProcess) driven through its seam: a fake spawner whose runs
exit when the test says, and a fake clock whose timers fire when the test advances it. No OS
process is started and nothing sleeps; every await is a turn of the event loop."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyvm2 import protocol
from pyvm2.daemon import policy, spawn, tree
from pyvm2.daemon.logs import Rotation
from pyvm2.daemon.monitor import Monitor
from pyvm2.daemon.policy import Trigger
from pyvm2.daemon.process import Hooks, LogPaths, ManagedProcess, ReloadFailed
from pyvm2.errors import NotFound, SpawnError
from pyvm2.launch import Launch
from pyvm2.spec import AppSpec
from pyvm2.status import TRANSITIONS, Desired, Status

S = Status


# ---- fakes ------------------------------------------------------------------------------------

class FakeTimer:
    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Wall and monotonic time that move only when the test advances them."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.mono = 1000.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.mono + delay_s, callback)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        """Move time on and fire, in order, the timers that fall due."""
        self.now += seconds
        self.mono += seconds
        for timer in sorted(self.pending(), key=lambda t: t.due):
            if timer.due <= self.mono:
                timer.cancelled = True
                timer.callback()


class FakeSpawner:
    """Runs are futures. `gate`, when set, holds every terminate before it acts, as the real
    one waits for its /proc scan; `survive` makes the next terminate fail as after SIGKILL."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.runs: list[spawn.Run] = []
        self.fail_next: str | None = None
        self.survive = False
        self.gate: asyncio.Future[None] | None = None
        self.terminating = 0
        self.swept: list[str] = []

    def start(self, spec: AppSpec, env: dict[str, str], token: str, capture: bool,
              handover: spawn.Handover | None = None) -> spawn.Run:
        if self.fail_next is not None:
            msg, self.fail_next = self.fail_next, None
            raise SpawnError(msg)
        run = spawn.Run(pid=10_000 + len(self.runs), token=token, create_time=self.clock.time(),
                        started_at=self.clock.time(), started_mono=self.clock.monotonic(),
                        launch=Launch(("/fake",), "fake", False), popen=None, out_fd=None,
                        err_fd=None, exited=asyncio.get_running_loop().create_future())
        self.runs.append(run)
        return run

    async def terminate(self, run: spawn.Run, spec: AppSpec,
                        log: Callable[[str], None]) -> str | None:
        self.terminating += 1
        try:
            if self.gate is not None:
                await self.gate
        finally:
            self.terminating -= 1
        if self.survive:
            self.survive = False
            return f"could not be killed (pid {run.pid} survived SIGKILL)"
        if not run.exited.done():
            run.exited.set_result((None, "SIGINT"))
        return None

    async def sweep(self, token: str, spec: AppSpec, log: Callable[[str], None]) -> None:
        self.swept.append(token)

    def release(self, run: spawn.Run) -> None:
        pass

    def alive(self) -> list[spawn.Run]:
        return [r for r in self.runs if r.alive]


class Harness:
    """One instance with fakes, recording every status it passes through."""

    def __init__(self, tmp: Path, **spec_kw: Any) -> None:
        self.clock = FakeClock()
        self.spawner = FakeSpawner(self.clock)
        self.logs: list[str] = []
        self.shutting_down = False
        self.statuses: list[Status] = [S.STOPPED]
        spec = AppSpec(name="app", script="/fake/app.py", cwd=str(tmp), **spec_kw)
        hooks = Hooks(log=self.logs.append, changed=self._changed, home=str(tmp),
                      run_dir=str(tmp / "run"), shutting_down=lambda: self.shutting_down,
                      rotation=lambda _spec: Rotation(0), background=lambda job: job(),
                      scanner=tree.Scanner(), spawner=self.spawner, clock=self.clock)
        paths = LogPaths(out=str(tmp / "out.log"), err=str(tmp / "err.log"), combined=None,
                         pid=str(tmp / "app.pid"))
        self.p = ManagedProcess(0, spec, 0, {}, paths, hooks)

    def _changed(self) -> None:
        if self.p.status != self.statuses[-1] or self.p.status == S.STOPPED:
            self.statuses.append(self.p.status)

    @property
    def transitions(self) -> set[tuple[Status, Status]]:
        return set(zip(self.statuses, self.statuses[1:], strict=False))

    def bugs(self) -> list[str]:
        return [m for m in self.logs if m.startswith("BUG")]

    @property
    def run(self) -> spawn.Run:
        assert self.p.run is not None, self.p.status
        return self.p.run

    def exit(self, code: int | None = 1) -> None:
        """The current run's leader exits by itself."""
        self.run.exited.set_result((code, None))

    def hold_terminate(self) -> asyncio.Future[None]:
        self.spawner.gate = asyncio.get_running_loop().create_future()
        return self.spawner.gate

    def release_terminate(self) -> None:
        assert self.spawner.gate is not None
        self.spawner.gate.set_result(None)
        self.spawner.gate = None

    def wait_ms(self) -> float:
        """How long the pending restart waits, from now."""
        assert self.p.status == S.WAITING_RESTART and self.p.next_restart_at is not None
        return round((self.p.next_restart_at - self.clock.now) * 1000)


async def settle(turns: int = 30) -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def aio(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))
    return run


@pytest.fixture
def make(tmp_path: Path):
    made: list[Harness] = []

    def factory(**spec_kw: Any) -> Harness:
        h = Harness(tmp_path, **spec_kw)
        made.append(h)
        return h

    yield factory
    for h in made:
        assert not h.bugs(), h.bugs()


async def online(h: Harness) -> None:
    await h.p.start()
    assert h.p.status == S.ONLINE


async def crash_waiting(h: Harness, uptime_s: float = 0.01) -> None:
    """Online, then an unstable exit: waiting restart."""
    await online(h)
    h.clock.advance(uptime_s)
    h.exit(1)
    await settle()
    assert h.p.status == S.WAITING_RESTART


async def errored_by_spawn(h: Harness) -> None:
    h.spawner.fail_next = "cannot run /fake/app.py: No such file"
    await h.p.start()
    assert h.p.status == S.ERRORED


# ---- every transition of the table ----------------------------------------------------------

async def _stopped_launching(h: Harness) -> None:
    await h.p.start()


async def _stopped_stopped(h: Harness) -> None:
    await h.p.stop()
    await h.p.stop("stopped again, by someone else")
    assert h.p.status_reason == "stopped again, by someone else"


async def _errored_launching(h: Harness) -> None:
    await errored_by_spawn(h)
    await h.p.start()
    assert h.p.status == S.ONLINE


async def _errored_stopped(h: Harness) -> None:
    await errored_by_spawn(h)
    await h.p.stop()
    assert h.p.status == S.STOPPED


async def _launching_errored(h: Harness) -> None:
    await errored_by_spawn(h)
    assert "No such file" in (h.p.status_reason or "")


async def _online_stopping(h: Harness) -> None:
    await online(h)
    await h.p.stop()


async def _stopping_errored(h: Harness) -> None:
    await online(h)
    h.spawner.survive = True
    await h.p.stop()
    assert h.p.status == S.ERRORED and "survived SIGKILL" in (h.p.status_reason or "")
    assert h.p.run is None


async def _stopping_errored_unstable(h: Harness) -> None:
    await online(h)
    h.exit(1)
    await settle()
    assert h.p.status == S.ERRORED and "too many unstable restarts" in (h.p.status_reason or "")


async def _stopping_launching(h: Harness) -> None:
    await online(h)
    await h.p.restart()
    assert h.p.status == S.ONLINE and h.p.restart_time == 1


async def _waiting_launching(h: Harness) -> None:
    await crash_waiting(h)
    h.clock.advance(h.wait_ms() / 1000)
    await settle()
    assert h.p.status == S.ONLINE and h.p.restart_time == 1


async def _waiting_stopped(h: Harness) -> None:
    await crash_waiting(h)
    await h.p.stop()


async def _launching_stopping(h: Harness) -> None:
    await h.p.start()
    assert h.p.status == S.LAUNCHING   # wait_ready: not ready yet
    await h.p.stop()
    assert h.p.status == S.STOPPED


SCENARIOS: dict[tuple[Status, Status], tuple[Callable[[Harness], Awaitable[None]], dict]] = {
    (S.STOPPED, S.LAUNCHING): (_stopped_launching, {}),
    (S.STOPPED, S.STOPPED): (_stopped_stopped, {}),
    (S.ERRORED, S.LAUNCHING): (_errored_launching, {}),
    (S.ERRORED, S.STOPPED): (_errored_stopped, {}),
    (S.LAUNCHING, S.ONLINE): (_stopped_launching, {}),
    (S.LAUNCHING, S.ERRORED): (_launching_errored, {}),
    (S.LAUNCHING, S.STOPPING): (_launching_stopping, {"wait_ready": True}),
    (S.ONLINE, S.STOPPING): (_online_stopping, {}),
    (S.STOPPING, S.STOPPED): (_online_stopping, {}),
    (S.STOPPING, S.ERRORED): (_stopping_errored, {}),
    (S.STOPPING, S.WAITING_RESTART): (crash_waiting, {}),
    (S.STOPPING, S.LAUNCHING): (_stopping_launching, {}),
    (S.WAITING_RESTART, S.LAUNCHING): (_waiting_launching, {}),
    (S.WAITING_RESTART, S.STOPPED): (_waiting_stopped, {}),
}


def test_every_transition_of_the_table_has_a_scenario():
    table = {(old, new) for old, news in TRANSITIONS.items() for new in news}
    assert set(SCENARIOS) == table


@pytest.mark.parametrize("edge", list(SCENARIOS), ids=lambda e: f"{e[0].value}->{e[1].value}")
@aio
async def test_transition(make, edge):
    scenario, spec_kw = SCENARIOS[edge]
    h = make(**spec_kw)
    await scenario(h)
    assert edge in h.transitions, h.statuses


@aio
async def test_too_many_unstable_exits_end_errored(make):
    await _stopping_errored_unstable(make(max_restarts=0))


@aio
async def test_a_status_change_outside_the_table_is_logged_as_a_bug_and_applied(tmp_path):
    h = Harness(tmp_path)
    h.p._set(S.ONLINE, "forced")
    assert h.p.status == S.ONLINE
    (bug,) = h.bugs()
    assert "illegal status change 'stopped' -> 'online'" in bug and "test_state_machine" in bug


# ---- the paths through the machine ------------------------------------------------------------

@aio
async def test_start_stop_restart_keep_desired_and_counters(make):
    h = make()
    await h.p.start()
    first = h.run
    assert h.p.desired is Desired.RUNNING and h.p.pid == first.pid
    await h.p.start()                       # already running: nothing happens
    assert h.run is first and len(h.spawner.runs) == 1
    await h.p.restart()
    assert h.p.restart_time == 1 and h.p.last_restart_reason == "restarted by user"
    assert not first.alive and h.run is not first
    await h.p.stop()
    assert h.p.desired is Desired.STOPPED and h.p.status == S.STOPPED and h.p.run is None
    assert h.statuses == [S.STOPPED, S.LAUNCHING, S.ONLINE, S.STOPPING, S.LAUNCHING, S.ONLINE,
                          S.STOPPING, S.STOPPED]
    assert not h.spawner.alive()


@aio
async def test_unstable_exits_back_off_then_a_long_run_resets_it(make):
    h = make(max_restarts=50)
    await online(h)
    delays = []
    for _ in range(3):
        h.clock.advance(0.01)
        h.exit(1)
        await settle()
        delays.append(h.wait_ms())
        h.clock.advance(delays[-1] / 1000)
        await settle()
        assert h.p.status == S.ONLINE
    assert delays == [100, 150, 225] and h.p.restart_time == 3
    h.clock.advance(31)                      # a stable run: restarts at once, forgives
    h.exit(1)
    await settle()
    assert h.wait_ms() == 0 and h.p.restart_state.unstable_restarts == 0
    h.clock.advance(0)
    await settle()
    h.clock.advance(0.01)
    h.exit(1)
    await settle()
    assert h.wait_ms() == 100


@aio
async def test_an_exit_with_autorestart_off_stops_and_a_cron_tick_runs_it_again(make):
    h = make(autorestart=False)
    await online(h)
    h.exit(0)
    await settle()
    assert h.p.status == S.STOPPED and h.p.desired is Desired.RUNNING
    assert h.p.request_restart("memory 2.0M > 1.0M", Trigger.MEMORY) is None  # needs a run
    task = h.p.request_restart("cron_restart * * * * *", Trigger.CRON)
    assert task is not None and await task
    assert h.p.status == S.ONLINE and h.p.restart_time == 0    # it ended no run: not counted
    assert h.p.last_restart_reason == "cron_restart * * * * *"


@aio
async def test_an_exit_while_the_daemon_shuts_down_is_not_restarted(make):
    h = make()
    await online(h)
    h.shutting_down = True
    h.exit(1)
    await settle()
    assert h.p.status == S.STOPPED and not h.clock.pending()


@aio
async def test_a_memory_restart_is_immediate_then_fast_repeats_back_off(make):
    h = make(max_memory_restart=100)
    await online(h)
    h.clock.advance(5)
    assert await h.p.request_restart("memory 2.0M > 1.0M", Trigger.MEMORY)
    assert h.p.status == S.ONLINE and h.p.restart_time == 1   # first: at once, counted
    assert h.p.last_restart_reason == "memory 2.0M > 1.0M"
    waits = []
    for _ in range(3):
        h.clock.advance(2)                   # crossed again 2 s after its start
        assert await h.p.request_restart("memory again", Trigger.MEMORY)
        waits.append(h.wait_ms())
        assert h.p.status_reason == "memory again" and not h.spawner.alive()
        h.clock.advance(waits[-1] / 1000)
        await settle()
        assert h.p.status == S.ONLINE
    assert waits == [1000, 1500, 2250] and h.p.restart_time == 4
    h.clock.advance(30)                      # a run of 30 s forgives
    assert await h.p.request_restart("memory late", Trigger.MEMORY)
    assert h.p.status == S.ONLINE and h.p.restart_time == 5


@aio
async def test_a_memory_restart_keeps_crash_accounting_a_watch_restart_forgets_it(make):
    h = make(max_restarts=50, exp_backoff_restart_delay=2000)
    await crash_waiting(h)
    h.clock.advance(2)
    await settle()
    assert h.p.status == S.ONLINE and h.p.restart_state.unstable_restarts == 1
    h.clock.advance(0.01)
    assert await h.p.request_restart("memory", Trigger.MEMORY)
    assert h.p.restart_state.unstable_restarts == 1
    # crashing again, waiting its back-off: a saved fix restarts it at once, forgiven
    h.clock.advance(0.01)
    h.exit(1)
    await settle()
    assert h.wait_ms() > 2000
    assert await h.p.request_restart("file changed: app.py", Trigger.WATCH)
    assert h.p.status == S.ONLINE and h.p.restart_state.unstable_restarts == 0
    assert not h.clock.pending() and h.p.next_restart_at is None
    h.clock.advance(60)
    await settle()
    assert len(h.spawner.alive()) == 1


# ---- races -----------------------------------------------------------------------------------

@aio
async def test_stop_during_waiting_restart_cancels_it(make):
    h = make()
    await crash_waiting(h)
    await h.p.stop()
    assert h.p.status == S.STOPPED and h.p.next_restart_at is None and not h.clock.pending()
    h.clock.advance(60)
    await settle()
    assert h.p.status == S.STOPPED and len(h.spawner.runs) == 1


@aio
async def test_stop_right_after_the_restart_timer_fired_wins(make):
    h = make()
    await crash_waiting(h)
    h.clock.advance(h.wait_ms() / 1000)      # the timer fired; its restart waits for the loop
    await h.p.stop()
    await settle()
    assert h.p.status == S.STOPPED and not h.spawner.alive() and len(h.spawner.runs) == 1


@aio
async def test_restart_during_stop_runs_after_it(make):
    h = make()
    await online(h)
    h.hold_terminate()
    stopping = asyncio.create_task(h.p.stop())
    await settle()
    assert h.p.status == S.STOPPING
    restarting = asyncio.create_task(h.p.restart())
    await settle()
    assert h.p.desired is Desired.RUNNING and h.p.status == S.STOPPING
    h.release_terminate()
    await asyncio.gather(stopping, restarting)
    assert h.p.status == S.ONLINE and len(h.spawner.alive()) == 1
    assert h.statuses[-4:] == [S.STOPPING, S.STOPPED, S.LAUNCHING, S.ONLINE]


@aio
async def test_stop_during_restart_ends_stopped(make):
    h = make()
    await online(h)
    h.hold_terminate()
    restarting = asyncio.create_task(h.p.restart())
    await settle()
    stopping = asyncio.create_task(h.p.stop())
    await settle()
    h.release_terminate()
    await asyncio.gather(restarting, stopping)
    assert h.p.status == S.STOPPED and h.p.desired is Desired.STOPPED
    assert not h.spawner.alive()


@aio
async def test_delete_during_a_user_restart_leaves_nothing_running(make):
    h = make()
    await online(h)
    h.hold_terminate()
    restarting = asyncio.create_task(h.p.restart())
    await settle()
    deleting = asyncio.create_task(h.p.delete())
    await settle()
    h.release_terminate()
    _, gone = await asyncio.gather(restarting, deleting)
    assert gone and h.p.removed and h.p.status == S.STOPPED and not h.spawner.alive()


@aio
async def test_a_restart_queued_behind_a_delete_says_not_found(make):
    h = make()
    await online(h)
    h.hold_terminate()
    deleting = asyncio.create_task(h.p.delete())
    await settle()
    restarting = asyncio.create_task(h.p.restart())
    starting = asyncio.create_task(h.p.start())
    await settle()
    h.release_terminate()
    assert await deleting
    for task in (restarting, starting):
        with pytest.raises(NotFound):
            await task
    assert not h.spawner.alive() and len(h.spawner.runs) == 1
    await h.p.stop()                         # harmless on a deleted instance
    assert h.p.status == S.STOPPED


@aio
async def test_delete_during_an_automatic_restart_leaves_nothing_running(make):
    h = make()
    await online(h)
    h.hold_terminate()
    auto = h.p.request_restart("cron_restart * * * * *", Trigger.CRON)
    assert auto is not None
    await settle()
    assert h.p.status == S.STOPPING
    deleting = asyncio.create_task(h.p.delete())
    await settle()
    h.release_terminate()
    assert await auto                        # it restarted...
    assert await deleting                    # ...and the delete, queued behind, stopped it
    assert h.p.removed and not h.spawner.alive()


@aio
async def test_an_automatic_restart_queued_behind_a_delete_does_nothing(make):
    h = make()
    await online(h)
    h.hold_terminate()
    # in one turn of the loop: a delete command is scheduled, then a file change asks for a
    # restart (accepted: nothing holds the lock yet); the delete runs first
    deleting = asyncio.create_task(h.p.delete())
    auto = h.p.request_restart("file changed: a.py", Trigger.WATCH)
    assert auto is not None
    await settle()
    assert h.p.status == S.STOPPING and not auto.done()
    h.release_terminate()
    assert await deleting
    assert not await auto
    assert not h.spawner.alive() and len(h.spawner.runs) == 1


@aio
async def test_delete_during_a_waiting_memory_restart_cancels_it(make):
    h = make(max_memory_restart=100)
    await online(h)
    h.clock.advance(5)
    assert await h.p.request_restart("memory", Trigger.MEMORY)
    h.clock.advance(1)
    assert await h.p.request_restart("memory", Trigger.MEMORY)
    assert h.p.status == S.WAITING_RESTART
    assert await h.p.delete()
    h.clock.advance(60)
    await settle()
    assert h.p.removed and not h.spawner.alive() and not h.clock.pending()
    assert h.p.request_restart("memory", Trigger.MEMORY) is None


@aio
async def test_a_delete_that_cannot_kill_keeps_the_instance(make):
    h = make()
    await online(h)
    h.spawner.survive = True
    assert not await h.p.delete()
    assert not h.p.removed and h.p.status == S.ERRORED


@aio
async def test_automatic_restarts_are_dropped_while_a_command_or_another_restart_runs(make):
    h = make()
    await online(h)
    h.hold_terminate()
    stopping = asyncio.create_task(h.p.stop())
    await settle()
    assert h.p.request_restart("cron", Trigger.CRON) is None      # a command holds the lock
    h.release_terminate()
    await stopping
    assert h.p.request_restart("cron", Trigger.CRON) is None      # not wanted running
    await h.p.start()
    first = h.p.request_restart("cron", Trigger.CRON)
    assert first is not None
    assert h.p.request_restart("file changed", Trigger.WATCH) is None   # one at a time
    assert await first
    assert h.p.restart_time == 1 and len(h.spawner.alive()) == 1


@aio
async def test_a_stop_during_the_scan_of_an_exit_wins_over_its_restart(make):
    h = make()
    await online(h)
    h.hold_terminate()                       # the exit's sweep waits for its /proc scan
    h.exit(1)
    await settle()
    assert h.p.status == S.STOPPING and h.spawner.terminating == 1
    stopping = asyncio.create_task(h.p.stop())
    await settle()
    h.release_terminate()
    await stopping
    await settle()
    assert h.p.status == S.STOPPED and h.p.status_reason == "stopped by user"
    assert not h.clock.pending() and not h.spawner.alive()


@aio
async def test_a_start_during_the_scan_of_an_exit_cuts_its_back_off(make):
    h = make()
    await online(h)
    h.hold_terminate()
    h.exit(1)
    await settle()
    starting = asyncio.create_task(h.p.start())
    await settle()
    h.release_terminate()
    await starting
    assert h.p.status == S.ONLINE and not h.clock.pending()
    h.clock.advance(60)
    await settle()
    assert len(h.spawner.alive()) == 1 and len(h.spawner.runs) == 2


@aio
async def test_restarts_queued_during_the_scan_of_a_stop_run_in_turn_leaving_one_run(make):
    h = make()
    await online(h)
    h.hold_terminate()
    stopping = asyncio.create_task(h.p.stop())
    await settle()
    restarts = [asyncio.create_task(h.p.restart()) for _ in range(3)]
    await settle()
    h.release_terminate()
    await asyncio.gather(stopping, *restarts)
    assert h.p.status == S.ONLINE and len(h.spawner.alive()) == 1


# ---- the memory decision beside its sampling --------------------------------------------------

class _App:
    def __init__(self, pm_id: int, pid: int | None, limit: int | None) -> None:
        self.pm_id, self.pid, self.memory_limit = pm_id, pid, limit
        self.cpu, self.memory, self.memory_measure = 0.0, 0, "rss"


def test_the_monitor_asks_for_a_restart_of_each_tree_over_its_limit():
    asked: list[tuple[int, str]] = []
    m = Monitor(lambda pm_id, reason: asked.append((pm_id, reason)))
    mib = 1024 * 1024
    me = os.getpid()       # this test's own process: a real tree of a few MiB at least
    over, under, free = _App(0, me, 1 * mib), _App(1, me, 1 << 50), _App(2, me, None)
    gone = _App(3, 2 ** 22 + 1, 1)         # above any pid_max: never a live process
    m.sample_now([over, under, free, gone])
    assert [pm_id for pm_id, _ in asked] == [0]
    assert asked[0][1].startswith("memory ") and asked[0][1].endswith("> 1.0M")
    assert over.memory > mib and under.memory == free.memory > mib
    assert under.memory_measure == "rss" and gone.memory == 0


def test_before_restart_is_pure_and_only_memory_backs_off():
    state = policy.RestartState(unstable_restarts=3, prev_delay_ms=500)
    assert policy.before_restart(Trigger.CRON, state, 10) == (0, state)
    assert policy.before_restart(Trigger.MEMORY, state, None) == (0, state)
    delay, after = policy.before_restart(Trigger.MEMORY, state, 10)
    assert delay == 0 and after.repeat_delay_ms == 1000 and after.unstable_restarts == 3
    assert policy.forgive(after) == policy.RestartState(repeat_delay_ms=1000)


# ---- readiness and reload ---------------------------------------------------------------------

@aio
async def test_wait_ready_is_launching_until_ready_1(make):
    h = make(wait_ready=True)
    await h.p.start()
    assert h.p.status == S.LAUNCHING
    h.p._message(h.run, {"STATUS": "warming up"})
    assert h.p.status == S.LAUNCHING and h.p.status_text == "warming up"
    h.p._message(h.run, {"READY": "1", "MAINPID": "77"})
    await settle()
    assert h.p.status == S.ONLINE and h.p.main_pid == 77
    assert not h.clock.pending()   # the listen_timeout timer went with the readiness


@aio
async def test_silent_until_listen_timeout_counts_as_ready_with_a_warning(make):
    h = make(wait_ready=True, listen_timeout=2000)
    await h.p.start()
    h.clock.advance(1.9)
    await settle()
    assert h.p.status == S.LAUNCHING
    h.clock.advance(0.2)
    await settle()
    assert h.p.status == S.ONLINE
    assert any("listen_timeout (2000ms)" in w for w in h.p.warnings)


async def _reload_when_ready(h: Harness) -> tuple[asyncio.Task[str], spawn.Run]:
    task = asyncio.get_running_loop().create_task(h.p.reload())
    await settle()
    assert h.p.pending is not None and h.p.pending is not h.run
    return task, h.p.pending


@aio
async def test_reload_starts_the_replacement_then_stops_the_old(make):
    h = make(wait_ready=True)
    await h.p.start()
    h.p._message(h.run, {"READY": "1"})
    await settle()
    old = h.run
    task, new = await _reload_when_ready(h)
    assert old.alive and h.p.run is old and h.p.status == S.ONLINE
    h.p._message(new, {"READY": "1"})
    assert await task == "reloaded"
    assert h.p.run is new and not old.alive and h.p.pending is None
    assert h.p.status == S.ONLINE and h.p.restart_time == 1
    assert S.STOPPING not in h.statuses[2:]   # online all along


@pytest.mark.parametrize("fault", ["exit", "stopping", "silent"])
@aio
async def test_a_failed_replacement_leaves_the_old_process_running(make, fault):
    h = make(wait_ready=True, listen_timeout=1000)
    await h.p.start()
    h.p._message(h.run, {"READY": "1"})
    await settle()
    old = h.run
    task, new = await _reload_when_ready(h)
    if fault == "exit":
        new.exited.set_result((3, None))
    elif fault == "stopping":
        h.p._message(new, {"STOPPING": "1"})
    else:
        h.clock.advance(1.1)
    await settle()
    with pytest.raises(ReloadFailed) as e:
        await task
    expected = {"exit": "exited with code 3", "stopping": "STOPPING=1",
                "silent": "within listen_timeout"}[fault]
    assert expected in e.value.message and f"pid {old.pid}" in e.value.message
    assert h.p.run is old and old.alive and not new.alive and h.p.status == S.ONLINE
    assert h.p.restart_time == 0 and h.p.pending is None


@aio
async def test_reload_of_a_stopped_instance_starts_it(make):
    h = make(min_uptime=100)
    assert await h.p.reload() == "started"
    assert h.p.status == S.ONLINE and h.p.desired is Desired.RUNNING


@aio
async def test_reload_without_wait_ready_waits_a_short_grace(make):
    h = make(min_uptime=100)
    await online(h)
    old = h.run
    assert await h.p.reload() == "reloaded"
    assert h.run is not old and not old.alive and h.p.status == S.ONLINE


# ---- the cached views `list` answers with ------------------------------------------------------

@aio
async def test_a_view_is_reused_until_something_it_shows_changes(make):
    h = make()
    text = h.p.view(None)
    assert h.p.view(None) is text
    snap = json.loads(text)
    assert snap["pm2_env"]["status"] == "stopped"
    assert snap["pm2_env"]["watching"] is None and snap["pm2_env"]["watch"] is False

    await online(h)
    snap = json.loads(h.p.view(None))
    assert snap["pm2_env"]["status"] == "online" and snap["pid"] == h.run.pid
    h.p.memory = 123456
    assert json.loads(h.p.view(None))["monit"]["memory"] == 123456
    assert json.loads(h.p.view("inotify"))["pm2_env"]["watching"] == "inotify"

    slim = json.loads(h.p.view(None, table=True))
    assert set(slim) == set(protocol.TABLE_KEYS) | {"pm2_env"}
    assert set(slim["pm2_env"]) == set(protocol.TABLE_ENV_KEYS)
    assert slim["monit"]["memory"] == 123456
    h.exit(0)
    await settle()
    assert json.loads(h.p.view(None, table=True))["pm2_env"]["status"] != "online"
