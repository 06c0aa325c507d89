"""The last lines of a log file, read backwards from its end."""

from __future__ import annotations

import os

#: At most this much of a file is read to find its last lines.
MAX_READ = 4 * 1024 * 1024
CHUNK = 65536


def tail(path: str | None, lines: int) -> list[str]:
    if not path or lines <= 0 or path == os.devnull:
        return []
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos, data = end, b""
            while pos > 0 and data.count(b"\n") <= lines and end - pos < MAX_READ:
                step = min(CHUNK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    out = text.split("\n") if text else []
    if pos > 0 and out:
        out = out[1:]  # the first piece may be the end of a longer line
    return out[-lines:]
