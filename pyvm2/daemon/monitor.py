"""Samples each app's whole process tree (cpu %, rss) and asks for a restart when a tree is over
its memory limit."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pyvm2.procfs import PPID, PROC, RSS, STATE, STIME, UTIME, stat_fields

#: Children lists are read every this many samples; a process that appears in an app's tree is
#: counted at the latest that many seconds later, its known members every second.
WALK_EVERY = 5
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Sample:
    cpu: float      # percent of one core, over the last interval
    rss: int        # bytes, the whole tree
    pids: int


class Sampled(Protocol):
    """What the monitor reads and writes of an app instance."""

    pm_id: int
    cpu: float
    memory: int

    @property
    def pid(self) -> int | None: ...

    @property
    def memory_limit(self) -> int | None: ...


def over_limit(rss: int, limit: int | None) -> str | None:
    """The restart reason when a tree's memory is over its limit, else None."""
    if limit and rss > limit:
        return f"memory {_mb(rss)} > {_mb(limit)}"
    return None


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f}M"


class Monitor:
    """Each `tick` samples every running instance's tree (in a worker thread), stores its cpu
    and memory, and calls `request_restart(pm_id, reason)` (the daemon's one path for automatic
    restarts, which drops it while the instance is busy and applies the back-off) for each tree
    over its memory limit. The rest runs on the loop."""

    def __init__(self, request_restart: Callable[[int, str], None]) -> None:
        self._sampler = Sampler()
        self._request_restart = request_restart

    async def tick(self, apps: Iterable[Sampled]) -> None:
        apps = list(apps)
        roots = {a.pm_id: pid for a in apps if (pid := a.pid)}
        samples = await asyncio.to_thread(self._sampler.sample, roots)
        self.apply(apps, roots, samples)

    def apply(self, apps: Iterable[Sampled], roots: Mapping[int, int],
              samples: Mapping[int, Sample]) -> None:
        for a in apps:
            s = samples.get(a.pm_id)
            if s is None or a.pid != roots.get(a.pm_id):
                continue  # gone or restarted while sampling: the figures are not its own
            a.cpu, a.memory = s.cpu, s.rss
            reason = over_limit(s.rss, a.memory_limit)
            if reason is not None:
                self._request_restart(a.pm_id, reason)


class Sampler:
    """Keeps the previous cpu times so each call yields cpu% since the last one. Blocking:
    the daemon calls `sample` in a thread."""

    def __init__(self) -> None:
        self._prev: dict[int, tuple[float, float]] = {}   # root pid -> (cpu seconds, monotonic)
        self._members: dict[int, set[int]] = {}            # root pid -> pids of its tree
        self._ticks = 0

    def sample(self, roots: Mapping[int, int]) -> dict[int, Sample]:
        """roots: key -> root pid. Returns key -> Sample for roots that exist."""
        if not roots:
            self._prev.clear()
            self._members.clear()
            return {}
        self._ticks += 1
        if sys.platform.startswith("linux") and _HAS_CHILDREN:
            # the shape of a tree rarely changes: find children every WALK_EVERY ticks, and in
            # between read only the processes already known (one small read each)
            known: set[int] = set()
            walk = self._ticks % WALK_EVERY == 1
            for root in roots.values():
                members = self._members.get(root)
                if members is None:
                    walk = True
                    break
                known |= members
            if walk:
                table = _trees_linux(roots.values(), all_threads=self._ticks % (2 * WALK_EVERY) == 1)
            else:
                table = {pid: st for pid in known if (st := _stat(pid)) is not None}
        elif sys.platform.startswith("linux"):
            table = _table_linux()
        else:
            table = _table_psutil()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        now = time.monotonic()
        out: dict[int, Sample] = {}
        prev_next: dict[int, tuple[float, float]] = {}
        members_next: dict[int, set[int]] = {}
        for key, root in roots.items():
            if root not in table:
                continue
            cpu_s, rss, n = 0.0, 0, 0
            stack = [root]
            seen = set()
            while stack:
                pid = stack.pop()
                if pid in seen or pid not in table:
                    continue
                seen.add(pid)
                _, c, r = table[pid]
                cpu_s += c
                rss += r
                n += 1
                stack.extend(children.get(pid, ()))
            before = self._prev.get(root)
            pct = 0.0
            if before is not None and now > before[1]:
                pct = max(0.0, (cpu_s - before[0]) / (now - before[1]) * 100)
            prev_next[root] = (cpu_s, now)
            members_next[root] = seen
            out[key] = Sample(round(pct, 1), rss, n)
        self._prev = prev_next
        self._members = members_next
        return out


_HAS_CHILDREN = os.path.exists(f"{PROC}/self/task/{os.getpid()}/children")


def _read(path: str) -> bytes:
    # os.open/os.read: half the cost of open() for these tiny files, which add up every second
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, cpu seconds, rss bytes) of one live process, None if gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None or fields[STATE] == b"Z":
        return None
    try:
        return (int(fields[PPID]), (int(fields[UTIME]) + int(fields[STIME])) / _CLK,
                int(fields[RSS]) * _PAGE)
    except (ValueError, IndexError):
        return None


def _trees_linux(roots: Iterable[int], all_threads: bool = True) -> dict[int, tuple[int, float, int]]:
    """Only the apps' own trees, found through the kernel's children lists: the cost follows
    the number of app processes, not of every process on the machine. Children forked by a
    thread other than the main one are seen when `all_threads` is set."""
    table: dict[int, tuple[int, float, int]] = {}
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in table:
            continue
        st = _stat(pid)
        if st is None:
            continue
        table[pid] = st
        try:
            tids = os.listdir(f"{PROC}/{pid}/task") if all_threads else [pid]
        except OSError:
            continue
        for tid in tids:
            try:
                stack.extend(int(c) for c in _read(f"{PROC}/{pid}/task/{tid}/children").split())
            except (OSError, ValueError):
                continue
    return table


def _table_linux() -> dict[int, tuple[int, float, int]]:
    """pid -> (ppid, cpu seconds, rss bytes) from one pass over /proc."""
    table = {}
    for entry in os.listdir(PROC):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            table[int(entry)] = st
    return table


def _table_psutil() -> dict[int, tuple[int, float, int]]:
    import psutil

    table = {}
    for p in psutil.process_iter(["ppid", "cpu_times", "memory_info", "status"]):
        info = p.info
        if info.get("status") == psutil.STATUS_ZOMBIE or info.get("cpu_times") is None:
            continue
        ct, mi = info["cpu_times"], info["memory_info"]
        table[p.pid] = (info["ppid"] or 0, ct.user + ct.system, mi.rss if mi else 0)
    return table
