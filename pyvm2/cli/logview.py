"""`pyvm2 logs`: the last lines of each app's files, then follow them as they grow."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

from pyvm2.cli.term import paint
from pyvm2.tail import tail_lines

POLL_S = 0.2
GREEN, RED, BLUE, GREY, DIM = "green", "red", "blue", "bright_black", "dim"


@dataclass
class Followed:
    path: str
    prefix: str
    colour: str
    is_err: bool
    pos: int = 0
    ino: int | None = None
    partial: bytes = b""
    needles: tuple[bytes, ...] = ()   # daemon log: only lines about these apps

    def keep(self, line: bytes) -> bool:
        return not self.needles or any(n in line for n in self.needles)


def show_logs(procs: list[dict], *, target: str, daemon_log: str, lines: int, follow: bool,
              want_out: bool, want_err: bool, raw: bool, timestamp: bool, color: bool) -> None:
    files: list[Followed] = []
    if want_out and want_err and not raw:
        # pyvm2's own lines (restarts and why) come first; for one app, only the lines about it
        needles = () if target == "all" else tuple(f"App [{p['name']}:{p['pm_id']}]".encode() for p in procs)
        if target == "all" or needles:
            files.append(Followed(daemon_log, "PYVM2", BLUE, False, needles=needles))
    seen: set[str] = set()
    for p in sorted(procs, key=lambda p: p["pm_id"]):
        env = p.get("pm2_env", {})
        label = f"{p['pm_id']}|{p['name']}"
        for key, is_err in (("pm_out_log_path", False), ("pm_err_log_path", True)):
            path = env.get(key)
            if not path or path == "/dev/null" or path in seen:
                continue
            if (is_err and not want_err) or (not is_err and not want_out):
                continue
            seen.add(path)
            files.append(Followed(path, label, RED if is_err else GREEN, is_err))
    what = "process" if target != "all" else "processes"
    if not raw:
        print(paint(f"[TAILING] Tailing last {lines} lines for [{target}] {what} "
                     f"(change the value with --lines option)", GREY, color))
    existing = [f for f in files if os.path.exists(f.path)]
    existing.sort(key=lambda f: os.path.getmtime(f.path))
    for f in existing:
        if f.needles:
            chunk = [ln for ln in tail_lines(f.path, max(lines * 50, 2000)) if f.keep(ln)][-lines:]
        else:
            chunk = tail_lines(f.path, lines)
        if not raw:
            print(paint(f"{f.path} last {lines} lines:", GREY, color))
        for line in chunk:
            _emit(f, line, raw=raw, timestamp=False, color=color, width=10)
        if not raw:
            print()
    sys.stdout.flush()
    for f in files:
        try:
            st = os.stat(f.path)
            f.pos, f.ino = st.st_size, st.st_ino
        except OSError:
            f.pos, f.ino = 0, None
    if not follow:
        return
    width = 3
    try:
        while True:
            for f in files:
                for line in _read_new(f):
                    if not f.keep(line):
                        continue
                    width = max(width, len(f.prefix) + 1)
                    _emit(f, line, raw=raw, timestamp=timestamp, color=color, width=width)
            sys.stdout.flush()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return


def _read_new(f: Followed) -> list[bytes]:
    try:
        st = os.stat(f.path)
    except OSError:
        return []
    if f.ino is not None and st.st_ino != f.ino:
        f.pos, f.partial = 0, b""          # rotated or recreated
    elif st.st_size < f.pos:
        f.pos, f.partial = 0, b""          # truncated (flush)
    f.ino = st.st_ino
    if st.st_size == f.pos:
        return []
    try:
        with open(f.path, "rb") as fh:
            fh.seek(f.pos)
            data = fh.read(4 * 1024 * 1024)
    except OSError:
        return []
    f.pos += len(data)
    data = f.partial + data
    lines = data.split(b"\n")
    f.partial = lines.pop()
    return lines


def _emit(f: Followed, line: bytes, *, raw: bool, timestamp: bool, color: bool, width: int) -> None:
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    stream = sys.stderr if (raw and f.is_err) else sys.stdout
    if raw:
        print(text, file=stream)
        return
    prefix = f.prefix[:width].ljust(width)
    stamp = paint(time.strftime("%Y-%m-%d-%H:%M:%S") + " ", DIM, color) if timestamp else ""
    print(f"{stamp}{paint(prefix + ' |', f.colour, color)} {text}", file=stream)
