"""The last lines of a file, read from its end: log views, monit and the daemon's start-up error."""

from __future__ import annotations

import os

_BLOCK = 8192


def tail_lines(path: str | os.PathLike[str], n: int, *, max_bytes: int | None = None) -> list[bytes]:
    """The last `n` lines of a file (without their newlines), reading backwards in growing blocks,
    never the whole file. With `max_bytes`, at most that much of the end is read: a log without
    newlines costs no more than that, and the line cut by the limit is left out (unless it is the
    only one). A file that cannot be read has no lines."""
    if n <= 0:
        return []
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            limit = end if max_bytes is None else min(end, max_bytes)
            pos, data, block = end, b"", _BLOCK
            while end - pos < limit and data.count(b"\n") <= n:
                step = min(block, limit - (end - pos))
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
                block *= 2
    except OSError:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if pos > 0 and len(lines) > 1:
        lines.pop(0)  # begins mid-line
    return lines[-n:]
