"""The seam between an instance's state machine and the OS: starting a run, stopping its whole
tree, sweeping what a dead run left, and the clock. ManagedProcess uses the real ones below
unless its hooks pass others (the state-machine tests pass a fake process and a fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

import psutil

from pyvm2.daemon import spawn, tree
from pyvm2.spec import AppSpec

#: How long a stop waits after SIGKILL before it calls the process unkillable.
KILL_GRACE_S = 5.0


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time (shown to users), monotonic time (uptimes, back-offs) and timers on the loop."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay_s, callback)


class Spawner(Protocol):
    """Starts and ends runs. `start` returns a Run whose `exited` future resolves when its leader
    ends and whose `started_mono` is on the same clock as the instance's."""

    def start(self, spec: AppSpec, env: dict[str, str], token: str, capture: bool) -> spawn.Run:
        """Raises SpawnError with a sentence when the app cannot be started."""
        ...

    async def terminate(self, run: spawn.Run, spec: AppSpec,
                        log: Callable[[str], None]) -> str | None:
        """Stop every process of the run; a reason if one survived SIGKILL, else None."""
        ...

    async def sweep(self, token: str, spec: AppSpec, log: Callable[[str], None]) -> None:
        """Stop what is left of a run whose leader died while no daemon watched it."""
        ...

    def release(self, run: spawn.Run) -> None:
        """Free what the run held once it is over (its named pipes)."""
        ...


def _leader(run: spawn.Run) -> int | None:
    """The run's pid, usable as a process and group id only until we reap it: after that the
    kernel may give it to someone else, and the run is found by its token alone."""
    return run.pid if run.alive else None


class OsSpawner:
    """Real processes: spawn.start, and the tree found by group, descendants and run token (a
    scan of /proc shared by concurrent stops through the Scanner)."""

    def __init__(self, run_dir: str, scanner: tree.Scanner) -> None:
        self.run_dir = run_dir
        self.scanner = scanner

    def start(self, spec: AppSpec, env: dict[str, str], token: str, capture: bool) -> spawn.Run:
        return spawn.start(spec, env, token, asyncio.get_running_loop(), self.run_dir,
                           capture=capture)

    def release(self, run: spawn.Run) -> None:
        spawn.remove_fifos(self.run_dir, run.token)

    async def terminate(self, run: spawn.Run, spec: AppSpec,
                        log: Callable[[str], None]) -> str | None:
        sig = getattr(signal, spec.kill_signal, signal.SIGINT)
        procs = tree.members(_leader(run), run.token, await self.scanner.fresh())
        if not procs and not run.alive:
            return None  # it exited and left nothing behind: the common case, one scan
        if spec.treekill:
            tree.signal_all(procs, sig, group=_leader(run))
        elif run.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, sig)
        if await self._wait_gone(run, procs, spec.kill_timeout / 1000, sig):
            return None
        survivors = tree.members(_leader(run), run.token, await self.scanner.fresh(), procs)
        log(f"still alive after {spec.kill_timeout}ms, "
            f"sending SIGKILL to {len(survivors)} process(es)")
        tree.signal_all(survivors, signal.SIGKILL, group=_leader(run))
        if await self._wait_gone(run, survivors, KILL_GRACE_S, signal.SIGKILL):
            return None
        left = tree.still_alive(survivors)
        pids = ", ".join(str(p.pid) for p in left) or str(run.pid)
        return f"could not be killed (pid {pids} survived SIGKILL)"

    async def _wait_gone(self, run: spawn.Run, procs: list[psutil.Process], timeout: float,
                         sig: int) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.01
        rescanned = False
        while True:
            if not run.alive and not tree.still_alive(procs):
                if rescanned:
                    return True
                # something may have been forked while we waited
                procs = tree.members(_leader(run), run.token, await self.scanner.fresh(), procs)
                rescanned = True
                if not procs:
                    return True
                tree.signal_all(procs, sig)
                continue
            if time.monotonic() >= deadline:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(run.exited), delay)
            delay = min(delay * 2, 0.1)

    async def sweep(self, token: str, spec: AppSpec, log: Callable[[str], None]) -> None:
        procs = tree.members(None, token, await self.scanner.fresh())
        if not procs:
            return
        log(f"stopping {len(procs)} orphaned process(es) of its last run")
        sig = getattr(signal, spec.kill_signal, signal.SIGINT)
        tree.signal_all(procs, sig)
        deadline = time.monotonic() + spec.kill_timeout / 1000
        while tree.still_alive(procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tree.signal_all(tree.still_alive(procs), signal.SIGKILL)
