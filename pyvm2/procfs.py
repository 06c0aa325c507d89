"""Reading a process's /proc/<pid>/stat line (Linux): its state, parent, group, cpu times, rss."""

from __future__ import annotations

import os

PROC = "/proc"

#: Indexes into `stat_fields`, which starts at the stat line's field 3 (state); see proc(5).
STATE, PPID, PGRP, UTIME, STIME, THREADS, RSS = 0, 1, 2, 11, 12, 17, 21


def stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and
    parentheses), so `fields[STATE]` is the state letter; None when the process is gone or the
    file cannot be read. os.open/os.read: half the cost of open() for these tiny files, which add
    up when every process is read every second."""
    try:
        fd = os.open(f"{PROC}/{pid}/stat", os.O_RDONLY)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        return stat[stat.rindex(b")") + 2:].split()
    except (OSError, ValueError):
        return None
