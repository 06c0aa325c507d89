"""Find every live process an app started (its group, its descendants, escapees carrying its
run token) and signal them; identity is pid plus create time, so a reused pid is never hit."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable

import psutil

from pyvm2.daemon.spawn import TOKEN_VAR

_PROC = "/proc"


def _token_pids_linux(tokens: set[str]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {t: set() for t in tokens}
    needles = {f"{TOKEN_VAR}={t}\0".encode(): t for t in tokens}
    me = os.getpid()
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        try:
            with open(f"{_PROC}/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if TOKEN_VAR.encode() not in env:
            continue
        env += b"\0"
        for needle, token in needles.items():
            if needle in env:
                found[token].add(pid)
    return found


def _token_pids_psutil(tokens: set[str]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {t: set() for t in tokens}
    for p in psutil.process_iter():
        try:
            tok = p.environ().get(TOKEN_VAR)
        except (psutil.Error, OSError):
            continue
        if tok in found:
            found[tok].add(p.pid)
    return found


def token_pids(tokens: Iterable[str]) -> dict[str, set[int]]:
    """pids whose environment carries one of the run tokens (blocking: call in a thread)."""
    tokens = set(tokens)
    if not tokens:
        return {}
    if sys.platform.startswith("linux") and os.path.isdir(_PROC):
        return _token_pids_linux(tokens)
    return _token_pids_psutil(tokens)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def members(root_pid: int | None, token: str,
            known: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """Live processes belonging to one run: the group led by root_pid, its descendants, anything
    carrying the token, and previously known members still alive (blocking). root_pid None means
    the run's leader is long gone and its pid may name someone else now: match by token only."""
    out: dict[int, psutil.Process] = {}

    def add(p: psutil.Process) -> None:
        if p.pid not in out and _alive(p):
            out[p.pid] = p

    for p in known:
        add(p)
    if root_pid is not None:
        try:
            root = psutil.Process(root_pid)
            add(root)
            for c in root.children(recursive=True):
                add(c)
        except psutil.Error:
            pass
    for pid in token_pids([token]).get(token, ()):
        try:
            p = psutil.Process(pid)
        except psutil.Error:
            continue
        add(p)
        try:
            for c in p.children(recursive=True):
                add(c)
        except psutil.Error:
            pass
    # group members that dropped the token from their environment
    for pid in _group_pids(root_pid) if root_pid is not None else ():
        try:
            add(psutil.Process(pid))
        except psutil.Error:
            pass
    out.pop(os.getpid(), None)
    return list(out.values())


def _group_pids(pgid: int) -> list[int]:
    if not (sys.platform.startswith("linux") and os.path.isdir(_PROC)):
        return []
    pids = []
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        try:
            with open(f"{_PROC}/{entry}/stat", "rb") as f:
                stat = f.read()
            # fields after the command name (which may contain spaces and parentheses)
            rest = stat[stat.rindex(b")") + 2:].split()
            if int(rest[2]) == pgid:
                pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def signal_all(procs: Iterable[psutil.Process], sig: int, group: int | None = None) -> None:
    """Send sig to the group (if given) and to each process still alive as the same process."""
    if group is not None:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            if p.is_running():
                p.send_signal(sig)
        except psutil.Error:
            pass


def still_alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if _alive(p)]


SIGKILL = signal.SIGKILL
