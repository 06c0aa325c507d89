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
from pyvm2.daemon.reaper import Orphans
from pyvm2.spec import AppSpec

#: How long a stop waits after SIGKILL before it calls the process unkillable.
KILL_GRACE_S = 5.0
#: How long the start-up sweep lets processes no journal knows end on SIGTERM before SIGKILL.
UNKNOWN_GRACE_S = 3.0


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

    def start(self, spec: AppSpec, env: dict[str, str], token: str, capture: bool,
              handover: spawn.Handover | None = None) -> spawn.Run:
        """Raises SpawnError with a sentence when the app cannot be started. `handover`: the
        descriptors the run gets (held sockets, a Node IPC channel)."""
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

    def __init__(self, run_dir: str, scanner: tree.Scanner, orphans: Orphans | None = None) -> None:
        self.run_dir = run_dir
        self.scanner = scanner
        self.orphans = orphans

    def start(self, spec: AppSpec, env: dict[str, str], token: str, capture: bool,
              handover: spawn.Handover | None = None) -> spawn.Run:
        return spawn.start(spec, env, token, asyncio.get_running_loop(), self.run_dir,
                           capture=capture, handover=handover)

    def release(self, run: spawn.Run) -> None:
        spawn.remove_fifos(self.run_dir, run.token)

    async def terminate(self, run: spawn.Run, spec: AppSpec,
                        log: Callable[[str], None]) -> str | None:
        sig = getattr(signal, spec.kill_signal, signal.SIGINT)
        scan = await self.scanner.fresh()
        procs = tree.members(_leader(run), run.token, scan)
        if self.orphans is not None:   # escaped descendants re-parented to the daemon
            procs += [p for p in self.orphans.take(run.token, scan.finished) if p not in procs]
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
                scan = await self.scanner.fresh()
                procs = tree.members(_leader(run), run.token, scan, procs)
                if self.orphans is not None:
                    procs += [p for p in self.orphans.take(run.token, scan.finished)
                              if p not in procs]
                rescanned = True
                if not procs:
                    return True
                tree.signal_all(procs, sig)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if run.alive:
                # one wait until the leader ends (not a poll: thousands of stops wait at once)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(run.exited), left)
                continue
            await asyncio.sleep(min(delay, left))   # members other than the leader: polled
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


async def stop_unknown(tokens: set[str], scanner: tree.Scanner,
                       log: Callable[[str], None]) -> int:
    """Stop every process carrying one of `tokens` (runs of this home that no journal knows:
    started just before a daemon died, or by a journal that was lost), with their descendants:
    SIGTERM, then SIGKILL after UNKNOWN_GRACE_S. Returns how many processes were found."""
    if not tokens:
        return 0
    scan = await scanner.fresh()
    procs: dict[int, psutil.Process] = {}
    for token in tokens:
        for p in tree.members(None, token, scan):
            procs[p.pid] = p
    if not procs:
        return 0
    found = list(procs.values())
    log(f"stopping {len(found)} process(es) of {len(tokens)} run(s) the journal does not know")
    tree.signal_all(found, signal.SIGTERM)
    deadline = time.monotonic() + UNKNOWN_GRACE_S
    while tree.still_alive(found) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for _ in range(2):   # anything forked meanwhile carries the token too
        scan = await scanner.fresh()
        for token in tokens:
            for p in tree.members(None, token, scan, found):
                procs.setdefault(p.pid, p)
        left = tree.still_alive(procs.values())
        if not left:
            break
        tree.signal_all(left, signal.SIGKILL)
        deadline = time.monotonic() + KILL_GRACE_S
        while tree.still_alive(left) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    left = tree.still_alive(procs.values())
    if left:
        log(f"could not stop {', '.join(str(p.pid) for p in left)} (survived SIGKILL)")
    return len(procs)


async def stop_procs(procs: list[psutil.Process], log: Callable[[str], None]) -> None:
    """SIGTERM, then SIGKILL after UNKNOWN_GRACE_S: processes no run claims any more."""
    if not procs:
        return
    log(f"stopping {len(procs)} escaped process(es) of runs that ended: "
        f"{', '.join(str(p.pid) for p in procs[:10])}")
    tree.signal_all(procs, signal.SIGTERM)
    deadline = time.monotonic() + UNKNOWN_GRACE_S
    while tree.still_alive(procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    tree.signal_all(tree.still_alive(procs), signal.SIGKILL)
