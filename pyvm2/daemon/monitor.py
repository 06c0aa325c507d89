"""Samples each app's whole process tree (cpu %, memory) on a schedule of its own, and asks for a
restart when a tree is over its memory limit.

An app with a memory limit is read again after `LAG_S + headroom / GROWTH_BOUND` seconds (sooner
when it is seen growing: half the time its growth needs to reach the limit), between `MIN_S` and
`MAX_S`: an app far below its limit and steady is read every few seconds, one close to it and
growing every 100 ms. A tree growing at up to GROWTH_BOUND is so seen over its limit at most
about LAG_S after crossing it, whatever the limit. An app without a limit is read for its
figures only every `SLOW_S` seconds (more with many apps: at most `SLOW_READS` trees a second).
A read is due a little early rather than late: on a whole second of the loop's clock when its
interval is two seconds or more, on a half second when it is one or more (the daemon's other
once-a-second work falls on the same ticks), so that reads share wake-ups, which cost far more
than the reads on a machine that is otherwise idle. A read costs one small file per process of
the tree (statm, and stat every CPU_S for the cpu time) plus its children list; the files of an
app with a limit stay open and are read again in one call each, and those of every app while
they all fit (FD_CACHE).

Memory is the tree's RSS, which counts a page shared by several processes (pre-forked workers)
once per process. When the RSS sum of a tree of several processes is over the limit, its
proportional set size (PSS, from
/proc/<pid>/smaps_rollup, which counts a shared page once in all) decides, and is what the app
shows until its RSS sum is under the limit again: RSS >= PSS, so nothing over the limit is missed.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pyvm2.procfs import PPID, PROC, RSS, STATE, STIME, THREADS, UTIME

_PROC = PROC
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_LINUX = sys.platform.startswith("linux") and os.path.isdir(_PROC)
_HAS_CHILDREN = _LINUX and os.path.exists(f"{_PROC}/self/task/{os.getpid()}/children")

#: The fastest growth (bytes/s) an app with a limit is read often enough for.
GROWTH_BOUND = 500 * 1000 * 1000
#: How late, at most, a tree growing at up to GROWTH_BOUND is seen over its limit.
LAG_S = 1.0
#: Bounds of the interval between two reads of an app with a limit.
MIN_S = 0.1
MAX_S = 5.0
#: An app without a limit is read this often, or less when there are many of them.
SLOW_S = 10.0
SLOW_READS = 100.0
#: Every read lists the tree's children (from the main thread of each member; from every thread
#: each THREADS_WALK_S, except for a lone process of one thread) and reads each member's memory
#: (statm); their cpu time (stat, dearer) only each CPU_S.
CPU_S = 10.0
THREADS_WALK_S = 30.0
#: Everything is looked at again this often, and POKE_S after `poke` (every change of an
#: instance's status pokes): new apps, new pids.
SWEEP_S = 30.0
POKE_S = 0.1
#: Reads of intervals this long or longer fall on whole seconds; half as long, on half seconds.
GRID_S = 1.0
#: A new run is read again this soon, so that its cpu figure means something early.
SECOND_READ_S = 2.0
#: Files of the processes of apps with a limit (statm, children), and of every app while there
#: are at most half this many (stat, children), are kept open, up to this many in all, and read
#: again in one call each: a fifth of the cost of opening them every time.
FD_CACHE = 256
#: Files of apps without a limit are kept open only under a descriptor limit this high at least:
#: under a low one, the descriptors belong to the apps.
KEEP_ALL_LIMIT = 16 * FD_CACHE
#: Reads of more processes than this go to a worker thread instead of the loop.
INLINE_PIDS = 200


class Sample(NamedTuple):
    cpu: float      # percent of one core, since the previous read
    memory: int     # bytes, the whole tree: RSS, or PSS when the RSS sum is over the limit
    pids: int
    measure: str = "rss"


class Sampled(Protocol):
    """What the monitor reads and writes of an app instance."""

    pm_id: int
    cpu: float
    memory: int
    memory_measure: str

    @property
    def pid(self) -> int | None: ...

    @property
    def memory_limit(self) -> int | None: ...


def over_limit(memory: int, limit: int | None, measure: str = "rss") -> str | None:
    """The restart reason when a tree's memory is over its limit, else None."""
    if limit and memory > limit:
        what = " (PSS)" if measure == "pss" else ""
        return f"memory {_mb(memory)}{what} > {_mb(limit)}"
    return None


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f}M"


def aligned(now: float, interval: float) -> float:
    """When a read `interval` seconds from `now` is due: moved earlier onto the grid (see the
    module's docstring), never later, and never by more than half the interval."""
    grid = GRID_S
    while grid > interval / 2:
        grid /= 2
        if grid < GRID_S / 2:
            return now + interval
    return math.floor((now + interval) / grid) * grid


def next_interval(memory: int, limit: int | None, growth: float, slow_s: float = SLOW_S) -> float:
    """Seconds until an app is read again, from its headroom under its limit and its growth
    (bytes/s since the previous read)."""
    if not limit:
        return slow_s
    headroom = limit - memory
    if headroom <= 0:
        return MIN_S
    interval = LAG_S + headroom / GROWTH_BOUND
    if growth > 0:
        interval = min(interval, headroom / growth / 2)
    return max(MIN_S, min(MAX_S, interval))


@dataclass(eq=False)
class _Track:
    """What the monitor remembers of one running instance."""

    app: Sampled
    pid: int
    limit: int | None
    members: set[int] = field(default_factory=set)
    threads_walked: float = -math.inf   # ... from every thread, not only the main one
    cpu_s: float | None = None
    rss: int | None = None              # the tree's RSS sum at the last read
    growth: float = 0.0                 # of the RSS sum, bytes/s between the last two reads
    at: float = 0.0                     # monotonic time of the last read
    first: bool = True
    cpu_pct: float = 0.0                # between the last two reads of its cpu time
    rss_at: float = 0.0                 # monotonic time of the last memory read
    due: float = 0.0
    gone: bool = False
    threads: int = 0                    # of a tree of one process, at its last cpu read
    #: a tree of one process whose files are kept: the keys of its memory (statm, or stat
    #: without a limit) and children files
    single: tuple[tuple[int, str], tuple[int, str]] | None = None


class Monitor:
    """Reads each running instance's tree when it is due (see the module's docstring), stores
    its cpu and memory on the instance, and calls `request_restart(pm_id, reason)` (the daemon's
    one path for automatic restarts, which drops it while the instance is busy and applies the
    back-off) for each tree over its memory limit. Runs on the loop; reads of many processes go
    to a worker thread. `record(pm_id, time, cpu, memory)` is called with every read, and
    with zeros when an instance stops running."""

    def __init__(self, request_restart: Callable[[int, str], None],
                 record: Callable[[int, float, float, int], None] | None = None) -> None:
        self._request_restart = request_restart
        self._record = record
        self._fd_room = _descriptor_limit() >= KEEP_ALL_LIMIT
        self._tracks: dict[int, _Track] = {}
        self._heap: list[tuple[float, int, int]] = []     # (due, seq, pm_id)
        self._seq = itertools.count()
        self._next_sweep = 0.0
        self._wake: asyncio.Future[None] | None = None
        self._wake_at = 0.0

    # ---- the schedule -------------------------------------------------------------------------
    async def run(self, apps: Callable[[], Iterable[Sampled]],
                  on_error: Callable[[BaseException], None]) -> None:
        """Sample forever; `apps()` gives the instances as they are now."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()   # time.monotonic(), which every time here is on
            try:
                if now >= self._next_sweep:
                    self.sweep(apps(), now)
                await self.read_due(now)
            except Exception as e:  # sampling must never take the daemon down
                on_error(e)
            wake_at = min(self._next_sweep, self._heap[0][0] if self._heap else math.inf)
            self._wake_at = wake_at
            self._wake = loop.create_future()
            timer = loop.call_at(wake_at, self._set_wake)
            try:
                await self._wake
            finally:
                timer.cancel()
                self._wake = None

    def poke(self) -> None:
        """An instance changed (started, restarted, stopped, removed): look at every app again
        soon. Pokes in a burst share one look."""
        self._next_sweep = min(self._next_sweep, time.monotonic() + POKE_S)
        if self._next_sweep < self._wake_at:
            self._set_wake()

    def _set_wake(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def sweep(self, apps: Iterable[Sampled], now: float) -> None:
        """Track new instances and new pids (read at once), forget those gone."""
        self._next_sweep = aligned(now, SWEEP_S)
        seen: set[int] = set()
        slow_n = 0
        for a in apps:
            pid = a.pid
            if not pid:
                continue
            seen.add(a.pm_id)
            t = self._tracks.get(a.pm_id)
            limit = a.memory_limit
            if limit is None:
                slow_n += 1
            if t is not None and t.pid == pid and t.app is a:
                if t.limit != limit:
                    t.limit = limit
                    self._schedule(t, now)
                continue
            if t is not None:
                _forget(t)
            t = _Track(a, pid, limit)
            self._tracks[a.pm_id] = t
            self._schedule(t, now)
        for pm_id in [i for i in self._tracks if i not in seen]:
            _forget(self._tracks.pop(pm_id))
            if self._record is not None:
                self._record(pm_id, time.time(), 0.0, 0)
        self._slow_s = max(SLOW_S, slow_n / SLOW_READS)
        # every app's files stay open while they all fit; else only those of apps with a limit
        self._keep_all = self._fd_room and len(self._tracks) * 2 <= FD_CACHE

    _slow_s = SLOW_S
    _keep_all = False

    def _schedule(self, t: _Track, due: float) -> None:
        t.due = due
        heapq.heappush(self._heap, (due, next(self._seq), t.app.pm_id))

    def _take_due(self, now: float) -> list[_Track]:
        """The tracks due now, and those due within the next second whose reads can wait for
        no one: reading them a little early saves a wake-up."""
        out: list[_Track] = []
        while self._heap:
            due, _, pm_id = self._heap[0]
            t = self._tracks.get(pm_id)
            if t is None or t.due != due or t.gone:
                heapq.heappop(self._heap)      # stale entry: rescheduled, replaced or gone
                continue
            # due a little later: read now and save a wake-up (a little sooner is always safe)
            if due - now > min(GRID_S / 4, (due - t.rss_at) / 4):
                break
            heapq.heappop(self._heap)
            out.append(t)
        return out

    async def read_due(self, now: float) -> None:
        batch = self._quick(self._take_due(now), now)
        if not batch:
            return
        pids = sum(max(1, len(t.members)) for t in batch)
        if pids > INLINE_PIDS:
            results = await asyncio.to_thread(_read_all, batch, now, self._keep_all)
        else:
            results = _read_all(batch, now, self._keep_all)
        self.apply(batch, results, time.monotonic())

    def _quick(self, tracks: list[_Track], now: float) -> list[_Track]:
        """The most common read, made cheap (one loop, everything at hand: on an idle daemon
        with apps under a limit, this is most of its work): a tree of one process whose files
        are kept open, under its limit if it has one, and not due for a walk of its threads.
        Two reads of kept files: its memory (statm; or stat for an app without a limit, whose
        every read is a cpu read) and its children list, found empty; and every CPU_S the stat
        of an app with a limit, by name. Returns the tracks that need the full read."""
        rest: list[_Track] = []
        files = _FILES._fds
        pread = os.pread
        record = self._record
        wall = time.time()
        slow = self._slow_s
        heap, seq = self._heap, self._seq
        for t in tracks:
            key = t.single
            # a process of one thread has no other thread's children list to walk
            if key is None or (t.threads != 1 and now - t.threads_walked >= THREADS_WALK_S):
                rest.append(t)
                continue
            mem_fd, kids = files.get(key[0]), files.get(key[1])
            a = t.app
            if mem_fd is None or kids is None or a.pid != t.pid:
                rest.append(t)
                continue
            limit = t.limit
            with_cpu = now - t.at >= CPU_S
            try:
                if key[0][1] == "statm" and not with_cpu:
                    rss = int(pread(mem_fd, 128, 0).split(None, 2)[1]) * _PAGE
                    cpu_s = None
                else:
                    stat = pread(mem_fd, 1024, 0) if key[0][1] == "stat" \
                        else _read_file(f"{_PROC}/{t.pid}/stat")
                    fields = stat[stat.rindex(b")") + 2:].split()
                    if fields[STATE] == b"Z":
                        rest.append(t)
                        continue
                    rss = int(fields[RSS]) * _PAGE
                    cpu_s = None
                    if with_cpu:
                        cpu_s = (int(fields[UTIME]) + int(fields[STIME])) / _CLK
                        t.threads = int(fields[THREADS])
                if (limit and rss > limit) or pread(kids, 64, 0).strip():
                    rest.append(t)
                    continue
            except (OSError, ValueError, IndexError):
                rest.append(t)
                continue
            _finish(t, now, cpu_s, rss)
            a.cpu, a.memory, a.memory_measure = t.cpu_pct, rss, "rss"
            if record is not None:
                record(a.pm_id, wall, t.cpu_pct, rss)
            t.due = due = aligned(now, next_interval(rss, limit, t.growth, slow))
            heapq.heappush(heap, (due, next(seq), a.pm_id))
        return rest

    def apply(self, batch: list[_Track], results: list[Sample | None], now: float) -> None:
        for t, s in zip(batch, results, strict=True):
            a = t.app
            if t.gone or self._tracks.get(a.pm_id) is not t:
                continue
            if s is None or a.pid != t.pid:
                _forget(t)
                self._tracks.pop(a.pm_id, None)   # exited or restarted: the next sweep sees it
                self._next_sweep = min(self._next_sweep, now + MIN_S)
                continue
            a.cpu, a.memory, a.memory_measure = s.cpu, s.memory, s.measure
            if self._record is not None:
                self._record(a.pm_id, time.time(), s.cpu, s.memory)
            reason = over_limit(s.memory, t.limit, s.measure)
            if reason is not None:
                self._request_restart(a.pm_id, reason)
            interval = next_interval(s.memory, t.limit, t.growth, self._slow_s)
            if t.first:
                t.first = False
                interval = min(interval, SECOND_READ_S)
            self._schedule(t, aligned(now, interval))

    def sample_now(self, apps: Iterable[Sampled]) -> None:
        """Read every app at once (blocking; for tests and tools)."""
        now = time.monotonic()
        self.sweep(apps, now)
        batch = list(self._tracks.values())
        self.apply(batch, _read_all(batch, now, self._keep_all), time.monotonic())


def _descriptor_limit() -> float:
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return 0
    return math.inf if soft == resource.RLIM_INFINITY else soft


def _forget(t: _Track) -> None:
    t.gone = True
    for pid in t.members:
        _FILES.drop(pid)


# ---- reading /proc (blocking: runs on the loop for a few processes, else in a thread) ----------

def _read_all(batch: list[_Track], now: float, keep_all: bool = False) -> list[Sample | None]:
    return [_read(t, now, keep_all) for t in batch]


def _read(t: _Track, now: float, keep_all: bool = False) -> Sample | None:
    """One read of one tree: its members as they are now (through the kernel's children lists:
    the cost follows the app's processes, not every process on the machine), their memory, and
    every CPU_S their cpu time. The files of an app with a limit are kept open (statm and the
    children lists), and those of every app with `keep_all` (stat: each of its reads is a cpu
    read)."""
    if not _LINUX:
        return _read_psutil(t, now)
    cached = keep_all or bool(t.limit)
    keep_stat = cached and not t.limit
    with_cpu = t.cpu_s is None or now - t.at >= CPU_S
    all_threads = now - t.threads_walked >= THREADS_WALK_S
    if all_threads:
        t.threads_walked = now
    if not _HAS_CHILDREN:
        return _read_table(t, now)
    if cached and not with_cpu and not all_threads and len(t.members) == 1:
        # the common tree of one process, between two cpu reads: its memory and its (empty)
        # children list, both kept open
        if keep_stat:
            st = _stat(t.pid, True)
            rss = None if st is None else st[2]
        else:
            rss = _statm_rss(t.pid, True)
        if rss is None:
            return None
        try:
            kids = _children(t.pid, t.pid, True)
        except OSError:
            kids = b""
        if not kids.strip():
            return _finish(t, now, None, rss)
    members: set[int] = set()
    cpu_s, rss = 0.0, 0
    stack = [t.pid]
    while stack:
        pid = stack.pop()
        if pid in members:
            continue
        if with_cpu:
            st = _stat(pid, keep_stat)
            if st is None:
                if pid == t.pid:
                    return None
                continue
            cpu_s += st[1]
            rss += st[2]
        else:
            r = _statm_rss(pid, cached and not keep_stat)
            if r is None:
                if pid == t.pid:
                    return None
                continue
            rss += r
        members.add(pid)
        try:
            tids = [int(x) for x in os.listdir(f"{_PROC}/{pid}/task")] if all_threads else [pid]
        except OSError:
            continue
        for tid in tids:
            try:
                kids = _children(pid, tid, cached)
                if kids:
                    stack.extend(map(int, kids.split()))
            except (OSError, ValueError):
                continue
    t.members = members
    t.single = ((t.pid, "stat" if keep_stat else "statm"), (t.pid, f"task/{t.pid}/children")) \
        if cached and members == {t.pid} else None
    return _finish(t, now, cpu_s if with_cpu else None, rss)


def _read_table(t: _Track, now: float) -> Sample | None:
    """Without children lists (old kernels): the tree from one pass over /proc."""
    table = _table_linux()
    if t.pid not in table:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    members, stack, cpu_s, rss = set(), [t.pid], 0.0, 0
    while stack:
        pid = stack.pop()
        if pid in members:
            continue
        members.add(pid)
        cpu_s += table[pid][1]
        rss += table[pid][2]
        stack.extend(children.get(pid, ()))
    t.members = members
    return _finish(t, now, cpu_s, rss)


def _finish(t: _Track, now: float, cpu_s: float | None, rss: int) -> Sample:
    """cpu_s None: only the memory was read this time."""
    if cpu_s is not None:
        if t.cpu_s is not None and now > t.at:
            t.cpu_pct = round(max(0.0, (cpu_s - t.cpu_s) / (now - t.at) * 100), 1)
        t.cpu_s, t.at = cpu_s, now
    if t.rss is not None and now > t.rss_at:
        t.growth = max(0.0, (rss - t.rss) / (now - t.rss_at))
    t.rss, t.rss_at = rss, now
    memory, measure = rss, "rss"
    # the RSS of one process counts each of its pages once already; in a tree, a page shared
    # by several members is counted once by their PSS
    if t.limit and rss > t.limit and len(t.members) > 1 and _LINUX:
        memory, measure = sum(_pss(pid) for pid in t.members), "pss"
    return Sample(t.cpu_pct, memory, len(t.members), measure)


def _read_file(path: str) -> bytes:
    # os.open/os.read: half the cost of open() for these tiny files
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _stat(pid: int, cached: bool = False) -> tuple[int, float, int] | None:
    """(ppid, cpu seconds, rss bytes) of one live process, None if gone or a zombie."""
    try:
        stat = _FILES.read(pid, "stat") if cached else _read_file(f"{_PROC}/{pid}/stat")
        fields = stat[stat.rindex(b")") + 2:].split()   # the command name may hold spaces
        if fields[STATE] == b"Z":
            return None
        return (int(fields[PPID]), (int(fields[UTIME]) + int(fields[STIME])) / _CLK,
                int(fields[RSS]) * _PAGE)
    except (OSError, ValueError, IndexError):
        return None


class _OpenFiles:
    """/proc files kept open (at most FD_CACHE), the longest kept closed first. A file opened
    for a process stays bound to it: once it has exited, reading fails (ESRCH) even if its pid
    now names another process, and the file is opened again by name."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._fds: dict[tuple[int, str], int] = {}

    def read(self, pid: int, name: str) -> bytes:
        key = (pid, name)
        fd = self._fds.get(key)
        if fd is not None:
            try:
                return os.pread(fd, 4096, 0)
            except OSError as e:
                self._close(key)
                if e.errno != errno.ESRCH:
                    raise
        fd = os.open(f"{_PROC}/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.pread(fd, 4096, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fds[key] = fd
        while len(self._fds) > self.cap:
            self._close(next(iter(self._fds)))
        return data

    def _close(self, key: tuple[int, str]) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def drop(self, pid: int) -> None:
        self._close((pid, "stat"))
        self._close((pid, "statm"))
        self._close((pid, f"task/{pid}/children"))

    def __len__(self) -> int:
        return len(self._fds)


_FILES = _OpenFiles(FD_CACHE)


def _statm_rss(pid: int, cached: bool = False) -> int | None:
    """RSS of one process in bytes, None if gone. A zombie reads 0."""
    try:
        data = _FILES.read(pid, "statm") if cached else _read_file(f"{_PROC}/{pid}/statm")
        return int(data.split(None, 2)[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int, tid: int, cached: bool) -> bytes:
    name = f"task/{tid}/children"
    return _FILES.read(pid, name) if cached and tid == pid else _read_file(f"{_PROC}/{pid}/{name}")


def _pss(pid: int) -> int:
    """Proportional set size of one process in bytes; its RSS where smaps_rollup is missing."""
    try:
        with open(f"{_PROC}/{pid}/smaps_rollup", "rb") as f:
            data = f.read()
        at = data.index(b"\nPss:")
        return int(data[at + 5: data.index(b"kB", at)]) * 1024
    except (OSError, ValueError):
        st = _stat(pid)
        return st[2] if st else 0


def _table_linux() -> dict[int, tuple[int, float, int]]:
    """pid -> (ppid, cpu seconds, rss bytes) from one pass over /proc."""
    table = {}
    for entry in os.listdir(_PROC):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            table[int(entry)] = st
    return table


def _read_psutil(t: _Track, now: float) -> Sample | None:
    import psutil

    try:
        root = psutil.Process(t.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu_s, rss, members = 0.0, 0, set()
    for p in procs:
        try:
            with p.oneshot():
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                ct, mi = p.cpu_times(), p.memory_info()
        except psutil.Error:
            continue
        cpu_s += ct.user + ct.system
        rss += mi.rss
        members.add(p.pid)
    if t.pid not in members:
        return None
    t.members = members
    return _finish(t, now, cpu_s, rss)
