"""`pyvm2 logs`: the last lines of each app's files, then follow them as they grow."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass

from pyvm2.cli.term import escape_controls, paint
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
    pm_id: int | None = None          # None: the daemon's own log
    name: str = "PYVM2"

    def keep(self, line: bytes) -> bool:
        return not self.needles or any(n in line for n in self.needles)


@dataclass
class Style:
    """How each line is printed: pm2's prefixed lines, --raw, --json or --format."""

    kind: str = "plain"               # plain, raw, json, format
    timestamp: str | None = None      # dayjs format for streamed lines (--timestamp)
    highlight: str | None = None      # text to highlight (--highlight)
    color: bool = False


def show_logs(procs: list[dict], *, target: str, daemon_log: str, lines: int, follow: bool,
              want_out: bool, want_err: bool, raw: bool, timestamp: bool | str | None, color: bool,
              style: Style | None = None) -> None:
    if style is None:
        stamp = "YYYY-MM-DD-HH:mm:ss" if timestamp is True else (timestamp or None)
        style = Style("raw" if raw else "plain", stamp, None, color)
    raw = style.kind == "raw"
    files: list[Followed] = []
    if want_out and want_err and not raw:
        # pyvm2's own lines (restarts and why) come first; for one app, only the lines about it
        needles = () if target == "all" else tuple(f"App [{p['name']}:{p['pm_id']}]".encode() for p in procs)
        if target == "all" or needles:
            files.append(Followed(daemon_log, "PYVM2", BLUE, False, needles=needles))
    seen: set[str] = set()
    for p in sorted(procs, key=lambda p: p["pm_id"]):
        env = p.get("pm2_env", {})
        label = escape_controls(f"{p['pm_id']}|{p['name']}")
        for key, is_err in (("pm_out_log_path", False), ("pm_err_log_path", True)):
            path = env.get(key)
            if not path or path == "/dev/null" or path in seen:
                continue
            if (is_err and not want_err) or (not is_err and not want_out):
                continue
            seen.add(path)
            files.append(Followed(path, label, RED if is_err else GREEN, is_err,
                                  pm_id=p["pm_id"], name=p["name"]))
    what = "process" if target != "all" else "processes"
    if style.kind == "plain":
        print(paint(f"[TAILING] Tailing last {lines} lines for [{target}] {what} "
                     f"(change the value with --lines option)", GREY, color))
    existing = [f for f in files if os.path.exists(f.path)]
    existing.sort(key=lambda f: os.path.getmtime(f.path))
    for f in existing:
        if f.needles:
            chunk = [ln for ln in tail_lines(f.path, max(lines * 50, 2000)) if f.keep(ln)][-lines:] if lines > 0 else []
        else:
            chunk = tail_lines(f.path, lines)
        if style.kind == "plain":
            print(paint(f"{f.path} last {lines} lines:", GREY, color))
        for line in chunk:
            _emit(f, line, style, width=10, streamed=False)
        if style.kind == "plain":
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
                    _emit(f, line, style, width=width, streamed=True)
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


_EVENT = re.compile(rb"App \[(.+?):(\d+)\] (online|restarting|exited|will restart|cannot start)"
                    rb"|(Stopping) app:(.+) id:(\d+)")
_EVENTS = {b"online": "online", b"restarting": "restart", b"Stopping": "stop", b"exited": "exit",
           b"will restart": "exit", b"cannot start": "errored"}


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _highlight(text: str, style: Style) -> str:
    if not style.highlight or not style.color:
        return text
    return text.replace(style.highlight, f"\x1b[100m{style.highlight}\x1b[49m")


def _emit(f: Followed, line: bytes, style: Style, *, width: int, streamed: bool) -> None:
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    if style.kind == "json":
        if f.pm_id is None:
            m = _EVENT.search(line) if streamed else None
            if m:
                word, name = (m.group(3), m.group(1)) if m.group(3) else (m.group(4), m.group(5))
                print(json.dumps({"timestamp": _iso_now(), "type": "process_event",
                                  "status": _EVENTS[word],
                                  "app_name": name.decode(errors="replace")}))
            return
        print(json.dumps({"message": text, "timestamp": _iso_now() if streamed else None,
                          "type": "err" if f.is_err else "out", "process_id": f.pm_id,
                          "app_name": f.name}, ensure_ascii=False))
        return
    if style.kind == "format":
        from pyvm2.dayjs import format_dayjs

        stamp = f"timestamp={format_dayjs('YYYY-MM-DD-HH:mm:ssZZ', time.time())} " if streamed else ""
        who = "app=pm2 " if f.pm_id is None else \
            f"app={f.name} id={f.pm_id} type={'error' if f.is_err else 'out'} "
        print(f"{stamp}{who}message={_highlight(text, style)}")
        return
    stream = sys.stderr if (style.kind == "raw" and f.is_err) else sys.stdout
    if style.kind == "raw":
        print(text, file=stream)
        return
    prefix = f.prefix[:width].ljust(width)
    stamp = ""
    if style.timestamp and streamed:
        from pyvm2.dayjs import format_dayjs

        stamp = paint(format_dayjs(style.timestamp, time.time()) + " ", DIM, style.color)
    print(f"{stamp}{paint(prefix + ' |', f.colour, style.color)} {_highlight(text, style)}",
          file=stream)
