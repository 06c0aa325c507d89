"""Find every live process an app started (its group, its descendants, escapees carrying its
run token) and signal them; identity is pid plus create time, so a reused pid is never hit."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from pyvm2.daemon import fds
from pyvm2.daemon.spawn import HOME_VAR, TOKEN_VAR
from pyvm2.procfs import PGRP, PPID, PROC, stat_fields


@dataclass(frozen=True)
class Scan:
    """One pass over every process: who carries which run token, who is in which group."""

    by_token: dict[str, frozenset[int]]
    by_group: dict[int, frozenset[int]]
    by_parent: dict[int, frozenset[int]]
    #: run token -> the PYVM2_HOME its carriers name (one of them, if they differ)
    home_of: dict[str, str] = dataclasses.field(default_factory=dict)
    #: when the pass ended (monotonic): what changed after it is not in it
    finished: float = 0.0

    def tokens_of_home(self, home: str) -> set[str]:
        """The run tokens of live processes started for `home`, whoever started them."""
        return {t for t, h in self.home_of.items() if h == home}

    def descendants(self, pid: int) -> set[int]:
        out: set[int] = set()
        stack = [pid]
        while stack:
            for child in self.by_parent.get(stack.pop(), ()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return out


def _scan_linux() -> Scan:
    by_token: dict[str, set[int]] = {}
    by_group: dict[int, set[int]] = {}
    by_parent: dict[int, set[int]] = {}
    home_of: dict[str, str] = {}
    needle = f"{TOKEN_VAR}=".encode()
    home_needle = f"{HOME_VAR}=".encode()
    me = os.getpid()
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        fields = stat_fields(entry)
        if fields is None:
            continue
        try:
            by_parent.setdefault(int(fields[PPID]), set()).add(pid)
            by_group.setdefault(int(fields[PGRP]), set()).add(pid)
            with open(f"{PROC}/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError as e:
            if fds.exhausted(e):
                raise  # a scan that could not look is no proof that nothing is left
            continue
        except (ValueError, IndexError):
            continue
        token = _env_value(env, needle)
        if token is None:
            continue
        by_token.setdefault(token, set()).add(pid)
        home = _env_value(env, home_needle)
        if home is not None:
            home_of[token] = home
    return Scan({k: frozenset(v) for k, v in by_token.items()},
                {k: frozenset(v) for k, v in by_group.items()},
                {k: frozenset(v) for k, v in by_parent.items()}, home_of)


def _env_value(env: bytes, needle: bytes) -> str | None:
    """The value of `needle` (b"NAME=") in a NUL-separated environment block, or None."""
    if env.startswith(needle):
        at = 0
    else:
        at = env.find(b"\0" + needle)
        if at < 0:
            return None
        at += 1
    end = env.find(b"\0", at)
    return env[at + len(needle): end if end >= 0 else None].decode(errors="replace")


def _scan_psutil() -> Scan:
    by_token: dict[str, set[int]] = {}
    by_parent: dict[int, set[int]] = {}
    home_of: dict[str, str] = {}
    for p in psutil.process_iter(["ppid"]):
        by_parent.setdefault(p.info["ppid"] or 0, set()).add(p.pid)
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        tok = env.get(TOKEN_VAR)
        if tok:
            by_token.setdefault(tok, set()).add(p.pid)
            if HOME_VAR in env:
                home_of[tok] = env[HOME_VAR]
    return Scan({k: frozenset(v) for k, v in by_token.items()}, {},
                {k: frozenset(v) for k, v in by_parent.items()}, home_of)


def scan_now() -> Scan:
    """One pass over /proc (blocking: call in a thread)."""
    linux = sys.platform.startswith("linux") and os.path.isdir(PROC)
    found = _scan_linux() if linux else _scan_psutil()
    return dataclasses.replace(found, finished=time.monotonic())


class Scanner:
    """Hands out scans that started after they were asked for, sharing them: every request that
    arrives while a scan runs is served by the next one, so 500 stops at once cost a few passes
    over /proc, not 500. Lives on the event loop."""

    def __init__(self) -> None:
        self._next: asyncio.Future[Scan] | None = None
        self._running = False

    async def fresh(self) -> Scan:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        self._running = True
        try:
            while self._next is not None:
                waiting, self._next = self._next, None
                try:
                    try:
                        found = await asyncio.to_thread(scan_now)
                    except OSError as e:
                        # out of descriptors: stops must still see the processes they stop
                        if not fds.exhausted(e) or not fds.BUDGET.release():
                            raise
                        found = await asyncio.to_thread(scan_now)
                    waiting.set_result(found)
                except Exception as e:  # a failed scan fails its waiters, not the daemon
                    waiting.set_exception(e)
        finally:
            self._running = False


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def members(root_pid: int | None, token: str, found: Scan,
            known: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """Live processes belonging to one run, from a scan taken after the caller's last look: the
    group led by root_pid, its descendants, anything carrying the token, and previously known
    members still alive. root_pid None means the run's leader is reaped and its pid may name
    someone else now: match by token only."""
    out: dict[int, psutil.Process] = {}

    def add(p: psutil.Process) -> None:
        if p.pid not in out and _alive(p):
            out[p.pid] = p

    for p in known:
        add(p)
    roots = set(found.by_token.get(token, ()))
    if root_pid is not None:
        roots.add(root_pid)
        # group members that dropped the token from their environment
        roots.update(found.by_group.get(root_pid, ()))
    for pid in roots | {d for r in roots for d in found.descendants(r)}:
        try:
            add(psutil.Process(pid))
        except psutil.Error:
            pass
    out.pop(os.getpid(), None)
    return list(out.values())


def signal_all(procs: Iterable[psutil.Process], sig: int, group: int | None = None) -> None:
    """Send sig once to every process: to the group (if given) in one call, then to each member
    outside it still alive as the same process. Twice would read as a forced "double Ctrl-C"."""
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            if group is not None and os.getpgid(p.pid) == group:
                continue
            if p.is_running():
                p.send_signal(sig)
        except (psutil.Error, ProcessLookupError):
            pass


def still_alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if _alive(p)]

