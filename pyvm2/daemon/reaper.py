"""The daemon as child subreaper: descendants of the apps that lose their parent re-parent to the
daemon instead of init, so one that escaped its run (a new session, an emptied environment) is
still found, stopped with the run it may belong to, and reaped."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from pyvm2.procfs import PROC

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Ask the kernel to re-parent orphaned descendants to this process (Linux 3.4+)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children_of_self() -> set[int]:
    """Pids of this process's children, from the kernel's per-thread children lists (or one
    pass over /proc where those lists are not compiled in)."""
    me = os.getpid()
    out: set[int] = set()
    try:
        tids = os.listdir(f"{PROC}/{me}/task")
        for tid in tids:
            with open(f"{PROC}/{me}/task/{tid}/children", "rb") as f:
                out.update(int(c) for c in f.read().split())
        return out
    except (OSError, ValueError):
        pass
    with contextlib.suppress(psutil.Error):
        out = {c.pid for c in psutil.Process(me).children()}
    return out


@dataclass
class Orphan:
    proc: psutil.Process
    #: run tokens it may have escaped from; it is stopped when the last of them ends
    candidates: set[str] = field(default_factory=set)


class Orphans:
    """Children of the daemon that are not run leaders: processes that escaped an app's tree and
    re-parented here when their parent died. Each is tied to the runs it may come from — the run
    whose output pipe it still writes to, else the run whose leader had just died when it
    appeared, else every run alive then and started before it — and is stopped with the last
    of them. The daemon reaps them (`poll`), only them:
    a leader's exit status belongs to its run's exit watch. Lives on the event loop."""

    def __init__(self, leaders: Callable[[], dict[int, str]], run_dir: str) -> None:
        """leaders(): pid -> run token of every run leader this daemon spawned and has not
        finished with; run_dir: where the runs' output pipes are."""
        self._leaders = leaders
        self._run_dir = os.path.realpath(run_dir)
        self._known: dict[int, Orphan] = {}
        self._strays: list[psutil.Process] = []
        self.enabled = False
        #: when the last poll began (monotonic)
        self.polled_at = -math.inf

    def poll(self, ended: Iterable[str] = ()) -> None:
        """Reap orphans that exited; register new ones. `ended`: tokens of runs whose leader
        just ended, which new orphans are then tied to."""
        if not self.enabled:
            return
        self.polled_at = time.monotonic()
        leaders = self._leaders()
        dead: set[str] | None = None   # runs whose leader has ended: read only for a new orphan
        for pid in children_of_self():
            if pid in leaders:
                continue
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done == pid:
                self._known.pop(pid, None)
                continue
            if pid in self._known:
                continue
            try:
                proc = psutil.Process(pid)
                born = proc.create_time()
            except psutil.Error:
                continue
            tokens = set(leaders.values())
            candidates = _output_of(pid, self._run_dir) & tokens
            if not candidates:
                if dead is None:
                    dead = set(ended) | {t for lp, t in leaders.items() if not _running(lp)}
                candidates = set(dead) or {t for lp, t in leaders.items() if _born(lp) <= born}
            if candidates:
                self._known[pid] = Orphan(proc, candidates)
            else:   # every run it could come from is over
                self._known[pid] = Orphan(proc, set())
                self._strays.append(proc)
        for pid in [p for p, o in self._known.items() if not _alive(o.proc)]:
            del self._known[pid]
        runs = set(leaders.values())
        for o in self._known.values():
            if o.candidates and not o.candidates & runs:   # its runs ended while it escaped
                o.candidates.clear()
                self._strays.append(o.proc)
            else:
                o.candidates &= runs

    def take(self, token: str, after: float = math.inf) -> list[psutil.Process]:
        """The run `token` ends: the orphans it was the last candidate of, to stop with it.
        Polls first unless a poll began at or after `after` (monotonic; the end of the scan the
        caller looked at), so that many stops at once share one poll per scan."""
        if self.polled_at < after:
            self.poll()
        out = []
        for o in self._known.values():
            if token in o.candidates:
                o.candidates.discard(token)
                if not o.candidates and _alive(o.proc):
                    out.append(o.proc)
        return out

    def strays(self) -> list[psutil.Process]:
        """Orphans found after every run they could come from had ended: to stop now."""
        out, self._strays = [p for p in self._strays if _alive(p)], []
        return out


def _output_of(pid: int, run_dir: str) -> set[str]:
    """Tokens of the runs whose output pipes (run_dir/<token>.out|err) pid writes to."""
    out = set()
    for fd in (1, 2):
        try:
            target = os.readlink(f"{PROC}/{pid}/fd/{fd}")
        except OSError:
            continue
        folder, _, name = target.rpartition("/")
        if folder == run_dir and name.endswith((".out", ".err")):
            out.add(name.rsplit(".", 1)[0])
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:][:1] != b"Z"
    except (OSError, ValueError):
        return False


def _born(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
