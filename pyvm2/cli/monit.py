"""`pyvm2 monit`: a live terminal dashboard of every app, the selected app's details and its log."""

from __future__ import annotations

import os
import select
import signal
import sys
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyvm2.cli.render import format_cpu, format_memory, format_uptime
from pyvm2.cli.term import NOT_RUNNING, escape_controls, status_style
from pyvm2.errors import Pyvm2Error, UsageError
from pyvm2.tail import tail_lines

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

    from pyvm2.client import Client

#: One `list` call per frame: the daemon samples cpu and memory itself about this often.
FRAME_S = 1.0
#: How long to wait for the rest of an escape sequence before taking a lone ESC as a key.
ESC_WAIT_S = 0.05
#: A `list` that takes longer than this means the daemon is stuck; show it rather than freeze.
LIST_TIMEOUT_S = 5.0
#: Messages about an action (restarted, could not stop) stay this long in the footer.
MESSAGE_S = 6.0
#: The most of each log file read per frame: only one screen of lines is shown, and a log without
#: newlines must not be read whole every second.
TAIL_BYTES = 64 * 1024
#: Terminals at least this wide get the list on the left and details + log on the right.
WIDE = 110

_SEQUENCES: dict[bytes, str] = {
    b"\x1b[A": "up", b"\x1b[B": "down", b"\x1bOA": "up", b"\x1bOB": "down",
    b"\x1b[5~": "pageup", b"\x1b[6~": "pagedown",
    b"\x1b[H": "home", b"\x1b[F": "end", b"\x1bOH": "home", b"\x1bOF": "end",
    b"\x1b[1~": "home", b"\x1b[4~": "end",
}
_LETTERS: dict[int, str] = {
    ord("k"): "up", ord("j"): "down", ord("g"): "home", ord("G"): "end",
    ord("r"): "restart", ord("s"): "stop",
    ord("q"): "quit", ord("Q"): "quit", 0x03: "quit", 0x04: "quit",
}


# --- keys ----------------------------------------------------------------------------------------


def _sequence_end(data: bytes, start: int) -> int | None:
    """Index just past the escape sequence at data[start], or None if it is not complete yet."""
    if start + 1 >= len(data):
        return None
    kind = data[start + 1]
    if kind == ord("["):
        for i in range(start + 2, len(data)):
            if 0x40 <= data[i] <= 0x7E:
                return i + 1
        return None
    if kind == ord("O"):
        return start + 3 if start + 2 < len(data) else None
    # ESC then an ordinary byte (Alt+key, or Escape typed before a key): drop only the ESC.
    return start + 1


def parse_keys(data: bytes, *, final: bool = False) -> tuple[list[str], bytes]:
    """Key names found in data, and an unfinished escape sequence to complete with the next read.

    With ``final`` nothing more is coming, so an unfinished sequence is dropped."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        if data[i] != 0x1B:
            key = _LETTERS.get(data[i])
            if key is not None:
                keys.append(key)
            i += 1
            continue
        end = _sequence_end(data, i)
        if end is None:
            if final:
                return keys, b""
            return keys, data[i:]
        key = _SEQUENCES.get(data[i:end])
        if key is not None:
            keys.append(key)
        i = end
    return keys, b""


class _Keyboard:
    """Keys from a terminal in cbreak mode; waits in select() so an idle dashboard costs nothing."""

    def __init__(self, fd: int, wake_fd: int) -> None:
        self.fd = fd
        self.wake_fd = wake_fd

    def _read(self) -> bytes:
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            data = b""
        # End of file means the terminal went away: nobody is left to press q.
        return data if data else b"\x04"

    def wait(self, timeout: float) -> tuple[list[str], bool]:
        """Keys pressed within timeout seconds, and whether something else asked for a redraw."""
        ready, _, _ = select.select([self.fd, self.wake_fd], [], [], max(timeout, 0.0))
        woken = self.wake_fd in ready
        if woken:
            _drain(self.wake_fd)
        if self.fd not in ready:
            return [], woken
        keys, pending = parse_keys(self._read())
        while pending:
            more, _, _ = select.select([self.fd], [], [], ESC_WAIT_S)
            if not more:
                tail, pending = parse_keys(pending, final=True)
            else:
                tail, pending = parse_keys(pending + self._read())
            keys.extend(tail)
        return keys, woken


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"\0")
    except (BlockingIOError, OSError):
        pass  # a full pipe already holds a wake-up


@contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one at a time and are not echoed; the old settings come back on any exit."""
    old = termios.tcgetattr(fd)
    new = termios.tcgetattr(fd)
    new[3] &= ~(termios.ICANON | termios.ECHO)
    new[6][termios.VMIN] = 1
    new[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, new)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


class _Quit(Exception):
    """SIGTERM: leave through the same doors as q so the terminal is restored."""


@contextmanager
def _signals(wake_fd: int) -> Iterator[None]:
    def on_resize(_signum: int, _frame: Any) -> None:
        _poke(wake_fd)

    def on_term(_signum: int, _frame: Any) -> None:
        raise _Quit

    saved: list[tuple[int, Any]] = []
    try:
        for signum, handler in ((signal.SIGWINCH, on_resize), (signal.SIGTERM, on_term)):
            saved.append((signum, signal.signal(signum, handler)))
    except ValueError:
        pass  # not the main thread: the size is still re-read every frame
    try:
        yield
    finally:
        for number, old in saved:
            signal.signal(number, old)


# --- reading the jlist shape and the log files ---------------------------------------------------


def _safe(value: Any) -> str:
    """User-supplied text with control characters shown escaped, so it cannot move the cursor."""
    return escape_controls("" if value is None else str(value))


def _env(proc: Mapping[str, Any]) -> Mapping[str, Any]:
    env = proc.get("pm2_env")
    return env if isinstance(env, Mapping) else {}


def _num(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _or_dash(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, (list, tuple)):
        return _safe(" ".join(str(v) for v in value))
    return _safe(value)


def _row(proc: Mapping[str, Any], now_ms: float) -> tuple[str, ...]:
    env = _env(proc)
    status = str(env.get("status") or "-")
    monit = proc["monit"] if isinstance(proc.get("monit"), Mapping) else {}
    cpu, mem = _num(monit.get("cpu")), _num(monit.get("memory"))
    started = _num(env.get("pm_uptime"))
    running = status not in NOT_RUNNING
    return (
        _or_dash(proc.get("pm_id")),
        _or_dash(proc.get("name")),
        status,
        format_cpu(cpu) if running and cpu is not None else "0%",
        format_memory(mem) if running and mem is not None and mem >= 0 else "0b",
        _or_dash(env.get("restart_time", 0)),
        format_uptime(now_ms - started) if status == "online" and started is not None else "0",
    )


def _details(proc: Mapping[str, Any], now_ms: float) -> tuple[tuple[str, str], ...]:
    env = _env(proc)
    limit = _num(env.get("max_memory_restart"))
    started = _num(env.get("pm_uptime"))
    status = str(env.get("status") or "-")
    pid = proc.get("pid")
    return (
        ("status", status),
        ("pid", _or_dash(pid) if status not in NOT_RUNNING and pid else "-"),
        ("uptime", format_uptime(now_ms - started)
         if status == "online" and started is not None else "-"),
        ("restarts", _or_dash(env.get("restart_time", 0))),
        ("interpreter", _or_dash(env.get("exec_interpreter"))),
        ("script", _or_dash(env.get("pm_exec_path"))),
        ("args", _or_dash(env.get("args"))),
        ("cwd", _or_dash(env.get("pm_cwd"))),
        ("status reason", _or_dash(env.get("status_reason"))),
        ("last restart", _or_dash(env.get("last_restart_reason"))),
        ("memory limit", format_memory(limit) if limit else "none"),
    )


class _LogCache:
    """Tails of log files, read again only when a file's size, mtime or inode changes."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], tuple[tuple[int, int, int], list[bytes]]] = {}

    def lines(self, proc: Mapping[str, Any], n: int) -> tuple[tuple[str, bool], ...]:
        env = _env(proc)
        files: list[tuple[int, str, bool]] = []
        for key, is_err in (("pm_out_log_path", False), ("pm_err_log_path", True)):
            path = env.get(key)
            if not isinstance(path, str) or not path or path == "/dev/null":
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if any(p == path for _m, p, _e in files):
                continue  # out and err merged into one file
            files.append((st.st_mtime_ns, path, is_err))
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._seen.get((path, n))
            if cached is None or cached[0] != stamp:
                self._seen[(path, n)] = (stamp, tail_lines(path, n, max_bytes=TAIL_BYTES))
        # Keep only the selected app's files: the cache must not grow with every app visited.
        shown = {(p, n) for _m, p, _e in files}
        for stale in [k for k in self._seen if k not in shown]:
            del self._seen[stale]
        if n <= 0:
            return ()
        tails = {path: [(line.decode("utf-8", errors="replace").rstrip("\r"), is_err)
                        for line in self._seen[(path, n)][1]] for _m, path, is_err in files}
        # A chatty stdout must not push the error lines out of view: stderr keeps up to a third.
        err = [t for _m, p, e in files if e for t in tails[p]]
        out = [t for _m, p, e in files if not e for t in tails[p]]
        if err and out and len(err) + len(out) > n:
            keep_err = min(len(err), max(1, n // 3), n)
            keep_out = min(len(out), n - keep_err)
            keep_err = n - keep_out
            for _m, p, e in files:
                tails[p] = tails[p][-keep_err:] if e else tails[p][-keep_out:] if keep_out else []
        merged = [t for _m, p, _e in sorted(files) for t in tails[p]]
        return tuple(merged[-n:])


# --- the view: plain data, compared between frames so an unchanged screen is not redrawn --------


@dataclass(frozen=True)
class _View:
    width: int
    height: int
    rows: tuple[tuple[str, ...], ...]
    index: int
    offset: int
    title: str
    details: tuple[tuple[str, str], ...]
    logs: tuple[tuple[str, bool], ...]
    footer: tuple[str, str]
    stale: bool


_HEADERS = ("id", "name", "status", "cpu", "mem", "↺", "uptime")


def _geometry(width: int, height: int, n_rows: int, n_details: int) -> dict[str, int]:
    """Heights of the panels (borders included) and the rows each can show."""
    body = max(height - 2, 3)
    if width >= WIDE:
        details = min(n_details + 2, max(body - 3, 3))
        return {"list_rows": max(body - 3, 1), "details": details,
                "log_rows": max(body - details - 2, 1)}
    # Stacked: the list takes what it needs up to a third, details go two per line.
    apps = min(n_rows + 3, max(body // 3, 4))
    details = min((n_details + 1) // 2 + 2, max(body - apps - 3, 3))
    return {"apps": apps, "list_rows": max(apps - 3, 1), "details": details,
            "log_rows": max(body - apps - details - 2, 1)}


class Monit:
    """The dashboard's state: the last list, the selection, pending actions and messages."""

    def __init__(self, client: Client) -> None:
        self.client: Client | None = client
        self.home = client.home
        self.procs: list[dict[str, Any]] = []
        self.selected: int | None = None
        self.index = 0
        self.offset = 0
        self.offline: str | None = None
        self.busy: str | None = None
        self.message: tuple[str, str] | None = None
        self.message_at = 0.0
        self.poll_soon = False
        self.logs = _LogCache()
        self.wake_fd: int | None = None

    # ---- data ------------------------------------------------------------------------------
    def poll(self) -> None:
        """One `list` call; on failure show why and try a fresh connection next frame."""
        from pyvm2.client import Client

        try:
            if self.client is None:
                self.client = Client(self.home).connect(autostart=False)
            procs = self.client.call("list", timeout=LIST_TIMEOUT_S)
        except Pyvm2Error as e:
            if self.client is not None:
                # A reply that arrives late would answer the next request: start clean.
                self.client.close()
                self.client = None
            self.offline = e.message
            return
        self.offline = None
        self.procs = sorted((p for p in procs or [] if isinstance(p, dict)),
                            key=lambda p: _num(p.get("pm_id")) or 0)
        self._reselect()

    def _reselect(self) -> None:
        ids = [p.get("pm_id") for p in self.procs]
        if self.selected in ids:
            self.index = ids.index(self.selected)
        elif ids:
            self.index = min(self.index, len(ids) - 1)
            self.selected = ids[self.index]
        else:
            self.index, self.selected = 0, None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    # ---- keys ------------------------------------------------------------------------------
    def move(self, key: str, page: int) -> None:
        if not self.procs:
            return
        last = len(self.procs) - 1
        target = {"up": self.index - 1, "down": self.index + 1, "pageup": self.index - page,
                  "pagedown": self.index + page, "home": 0, "end": last}[key]
        self.index = min(max(target, 0), last)
        self.selected = self.procs[self.index].get("pm_id")

    def act(self, verb: str) -> None:
        """Restart or stop the selected app in a thread, so the screen keeps refreshing."""
        if not self.procs or self.selected is None:
            return
        name = _safe(self.procs[self.index].get("name"))
        if self.busy:
            self._say(f"still busy: {self.busy}", "yellow")
            return
        doing = {"restart": "restarting", "stop": "stopping"}[verb]
        done = {"restart": "restarted", "stop": "stopped"}[verb]
        self.busy = f"{doing} {name}…"
        target = str(self.selected)

        def work() -> None:
            from pyvm2.client import Client

            try:
                client = Client(self.home).connect(autostart=False)
                try:
                    client.call(verb, {"targets": [target]}, timeout=None)
                finally:
                    client.close()
                outcome = (f"{done} {name}", "green")
            except Pyvm2Error as e:
                outcome = (f"could not {verb} {name}: {e.message}", "bold red")
            except Exception as e:  # a thread's traceback would land on the dashboard
                outcome = (f"could not {verb} {name}: {e}", "bold red")
            self.busy = None
            self._say(*outcome)
            self.poll_soon = True
            if self.wake_fd is not None:
                _poke(self.wake_fd)

        threading.Thread(target=work, name=f"monit-{verb}", daemon=True).start()

    def _say(self, text: str, style: str) -> None:
        self.message = (text, style)
        self.message_at = time.monotonic()

    # ---- view ------------------------------------------------------------------------------
    def view(self, width: int, height: int, now_ms: float | None = None) -> _View:
        now = time.time() * 1000 if now_ms is None else now_ms
        rows = tuple(_row(p, now) for p in self.procs)
        proc = self.procs[self.index] if self.procs else None
        details = _details(proc, now) if proc is not None else ()
        geo = _geometry(width, height, len(rows), len(details) or 11)
        visible = geo["list_rows"]
        if self.index < self.offset:
            self.offset = self.index
        elif self.index >= self.offset + visible:
            self.offset = self.index - visible + 1
        self.offset = max(0, min(self.offset, max(len(rows) - visible, 0)))
        title = (f"{_safe(proc.get('name'))} ({_safe(proc.get('pm_id'))})"
                 if proc is not None else "")
        logs = self.logs.lines(proc, geo["log_rows"]) if proc is not None else ()
        return _View(width, height, rows, self.index, self.offset, title, details, logs,
                     self._footer(), self.offline is not None)

    def _footer(self) -> tuple[str, str]:
        if self.offline is not None:
            return (f"daemon unreachable: {self.offline} · retrying · q quits", "bold red")
        if self.busy:
            return (self.busy, "yellow")
        if self.message and time.monotonic() - self.message_at < MESSAGE_S:
            return self.message
        return ("", "")


# --- drawing (rich is imported here, lazily) -----------------------------------------------------


def _log_text(line: str, is_err: bool) -> Text:
    from rich.text import Text

    # Apps colour their output: keep SGR colours, drop every other escape, escape what is left.
    body = Text.from_ansi(line, no_wrap=True, overflow="ellipsis")
    if not body.plain.isprintable():
        body.plain = "".join(ch if ch.isprintable() or ch == "\t" else "�" for ch in body.plain)
    # stderr is marked by its gutter (`!`), not by colour alone
    gutter = Text("!", style="bold red") if is_err else Text("▍", style="green")
    return Text.assemble(gutter, " ", body, no_wrap=True, overflow="ellipsis")


#: Minimum widths so the columns do not jump as numbers grow by a digit from one second to the next.
_MIN_WIDTHS = (2, 4, 7, 5, 8, 2, 6)
_GAP = 2


def _apps_width(view: _View) -> int:
    """Width of the apps panel that shows every cell whole (borders and padding included)."""
    from rich.cells import cell_len

    widths = [max([minimum, cell_len(header), *(cell_len(row[i]) for row in view.rows)])
              for i, (header, minimum) in enumerate(zip(_HEADERS, _MIN_WIDTHS, strict=True))]
    return 1 + sum(widths) + _GAP * len(widths) + 4


def _apps_panel(view: _View, height: int) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_edge=False, pad_edge=False, expand=True, show_header=True,
                  header_style="bold cyan", padding=(0, _GAP // 2), collapse_padding=False)
    table.add_column("", width=1, no_wrap=True)
    for i, (header, minimum) in enumerate(zip(_HEADERS, _MIN_WIDTHS, strict=True)):
        # Only the name gives way when the panel is narrow; ellipsis shows it was cut.
        table.add_column(header, no_wrap=True, overflow="ellipsis", min_width=minimum,
                         ratio=1 if i == 1 else None,
                         justify="right" if header in ("cpu", "mem", "↺") else "left")
    visible = max(height - 3, 1)
    shown = view.rows[view.offset:view.offset + visible]
    for i, row in enumerate(shown, start=view.offset):
        cells = [Text(c) for c in row]
        cells[0].stylize("bold cyan")
        cells[2].stylize(status_style(row[2]))
        selected = i == view.index
        table.add_row(Text("▶" if selected else " ", style="bold"), *cells,
                      style="reverse" if selected else None)
    hidden = len(view.rows) - len(shown)
    subtitle = f"{view.index + 1}/{len(view.rows)}" if hidden else None
    title = "apps (last known)" if view.stale else "apps"
    return Panel(table, title=title, title_align="left", subtitle=subtitle,
                 subtitle_align="right", border_style="bright_black", height=height)


def _details_panel(view: _View, height: int, columns: int) -> RenderableType:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1), expand=True)
    for _ in range(columns):
        grid.add_column(style="cyan", no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    cells: list[Text] = []
    for label, value in view.details:
        style = status_style(value) if label == "status" else ""
        cells += [Text(label), Text(value, style=style)]
    for start in range(0, len(cells), 2 * columns):
        chunk = cells[start:start + 2 * columns]
        chunk += [Text("")] * (2 * columns - len(chunk))
        grid.add_row(*chunk)
    return Panel(grid, title=view.title, title_align="left", border_style="bright_black",
                 height=height)


def _logs_panel(view: _View) -> RenderableType:
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    lines = [_log_text(line, is_err) for line, is_err in view.logs]
    body: RenderableType = Group(*lines) if lines else Text("(no log lines yet)", style="dim")
    return Panel(body, title="log", title_align="left", border_style="bright_black")


def draw(view: _View) -> RenderableType:
    """The whole screen for one view."""
    from rich.align import Align
    from rich.layout import Layout
    from rich.panel import Panel
    from rich.text import Text

    header = Text.assemble(("pyvm2 monit", "bold"), "  ",
                           ("↑/↓ select · r restart · s stop · q quit", "dim"),
                           no_wrap=True, overflow="ellipsis")
    # An empty Text is falsy, and Layout would draw its placeholder box instead.
    footer = Text(view.footer[0] or " ", style=view.footer[1], no_wrap=True,
                  overflow="ellipsis")
    root = Layout()
    body = Layout()
    root.split_column(Layout(header, size=1), body, Layout(footer, size=1))
    if not view.rows:
        empty = Text("no apps: start one with pyvm2 start <script> [--name <name>]",
                     style="bold", justify="center")
        body.update(Panel(Align.center(empty, vertical="middle"), title="apps",
                          title_align="left", border_style="bright_black"))
        return root
    geo = _geometry(view.width, view.height, len(view.rows), len(view.details))
    body_h = max(view.height - 2, 3)
    if view.width >= WIDE:
        right = Layout()
        right.split_column(Layout(_details_panel(view, geo["details"], 1), size=geo["details"]),
                           Layout(_logs_panel(view)))
        apps_w = min(max(_apps_width(view), 40), view.width // 2)
        body.split_row(Layout(_apps_panel(view, body_h), size=apps_w), right)
    else:
        body.split_column(Layout(_apps_panel(view, geo["apps"]), size=geo["apps"]),
                          Layout(_details_panel(view, geo["details"], 2), size=geo["details"]),
                          Layout(_logs_panel(view)))
    return root


# --- the loop ------------------------------------------------------------------------------------


def _make_console() -> Console:
    from rich.console import Console

    # Markup and highlighting would re-colour names and log lines that happen to look like them.
    return Console(markup=False, highlight=False, emoji=False)


def _terminal_size(fd: int, console: Console) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return max(size.columns, 20), max(size.lines, 6)
    except OSError:
        return console.size.width, console.size.height


def run(client: Client) -> None:
    """Show the dashboard until q, Ctrl-C or SIGTERM; the terminal is restored on every exit."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        client.close()
        raise UsageError("monit needs a terminal", "use pyvm2 list or pyvm2 jlist in scripts")
    if os.environ.get("TERM") == "dumb":
        client.close()
        raise UsageError("monit needs a terminal that can redraw the screen (TERM is dumb)",
                         "use pyvm2 list or pyvm2 jlist instead")
    from rich.live import Live

    monit = Monit(client)
    console = _make_console()
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    monit.wake_fd = wake_w
    keyboard = _Keyboard(in_fd, wake_r)
    try:
        with ExitStack() as stack:
            stack.enter_context(_signals(wake_w))
            stack.enter_context(_cbreak(in_fd))
            live = stack.enter_context(Live(console=console, screen=True, auto_refresh=False,
                                            redirect_stdout=False, redirect_stderr=False,
                                            transient=False))
            _loop(monit, live, console, keyboard, out_fd)
    except (KeyboardInterrupt, _Quit):
        pass
    finally:
        monit.close()
        # An action thread still running must not write into a reused descriptor.
        monit.wake_fd = None
        os.close(wake_r)
        os.close(wake_w)


def _loop(monit: Monit, live: Any, console: Console, keyboard: _Keyboard, out_fd: int) -> None:
    last: _View | None = None
    next_poll = 0.0
    force = True
    while True:
        now = time.monotonic()
        if now >= next_poll or monit.poll_soon:
            monit.poll_soon = False
            monit.poll()
            next_poll = time.monotonic() + FRAME_S
        width, height = _terminal_size(out_fd, console)
        view = monit.view(width, height)
        if force or view != last:
            console.size = (width, height)
            live.update(draw(view), refresh=True)
            last, force = view, False
        keys, woken = keyboard.wait(next_poll - time.monotonic())
        # A resize may leave the screen half drawn even when the data is the same.
        force = woken and not keys
        page = max(_geometry(width, height, len(view.rows), len(view.details) or 11)
                   ["list_rows"] - 1, 1)
        for key in keys:
            if key == "quit":
                return
            if key in ("restart", "stop"):
                monit.act(key)
            else:
                monit.move(key, page)
