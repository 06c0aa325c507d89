"""Terminal rendering of pm2-shaped process dicts (list table, describe).

The list table is drawn by hand, without rich, because `pyvm2 list` must start fast; describe uses
rich, imported inside the functions that need it.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from io import StringIO
from typing import TYPE_CHECKING, Any, NamedTuple

from pyvm2.cli.term import NOT_RUNNING, RESET, escape_controls, paint, sgr, status_style
from pyvm2.status import Status

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = [
    "NA",
    "choose_layout",
    "describe_rows",
    "format_cpu",
    "format_memory",
    "format_uptime",
    "render_describe",
    "render_list",
]

NA = "N/A"

_HEADER_STYLE = "bold cyan"
_BORDER_STYLE = "bright_black"
_ID_STYLE = "bold cyan"

_MISSING: Any = object()

_KIB = 1024
_MEMORY_UNITS = (("tb", _KIB**4), ("gb", _KIB**3), ("mb", _KIB**2), ("kb", _KIB))
_UPTIME_UNITS = (("Y", 31_536_000), ("M", 2_592_000), ("D", 86_400), ("h", 3_600), ("m", 60))


# --- pure formatters ---------------------------------------------------------------------------


def _round1(value: float) -> Decimal:
    # JavaScript's toFixed rounds the exact binary value half up; Python's format would round
    # half to even, so 1280 bytes would read 1.2kb instead of pm2's 1.3kb.
    return Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def format_uptime(ms_since: float) -> str:
    """Elapsed milliseconds as pm2's timeSince: a unit is used only when its count is above 1."""
    seconds = math.floor(max(ms_since, 0) / 1000)
    for unit, size in _UPTIME_UNITS:
        count = seconds // size
        if count > 1:
            return f"{count}{unit}"
    return f"{seconds}s"


def format_memory(num_bytes: float) -> str:
    """Bytes as pm2 prints them: base 1024, one decimal (``512b``, ``3.1kb``, ``13.2mb``)."""
    if num_bytes < _KIB:
        return f"{num_bytes:g}b" if isinstance(num_bytes, float) else f"{num_bytes}b"
    for unit, size in _MEMORY_UNITS:
        if num_bytes >= size:
            return f"{_round1(num_bytes / size)}{unit}"
    raise AssertionError("unreachable: kb covers everything from 1024 up")


def format_cpu(pct: float) -> str:
    """CPU percent rounded to one decimal, without a trailing ``.0`` (``0%``, ``1.3%``)."""
    rounded = _round1(pct)
    if rounded == rounded.to_integral_value():
        rounded = rounded.quantize(Decimal(1))
    return f"{rounded}%"


def _text(value: Any) -> str:
    kind = value.__class__
    if kind is str and value and value.isprintable():
        return value   # the common case, as below
    if kind is int:
        return str(value)
    if value is _MISSING or value is None or value == "" or value == []:
        return NA
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape_controls(str(value))


# --- reading the jlist shape ---------------------------------------------------------------------


def _env(proc: Mapping[str, Any]) -> Mapping[str, Any]:
    env = proc.get("pm2_env")
    return env if isinstance(env, Mapping) else {}


def _pick(proc: Mapping[str, Any], key: str) -> Any:
    """A top-level jlist key, falling back to the same key inside pm2_env."""
    value = proc.get(key, _MISSING)
    if value is _MISSING or value is None:
        value = _env(proc).get(key, value)
    return value


def _status(proc: Mapping[str, Any]) -> str | None:
    status = _env(proc).get("status")
    return str(status) if status is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _now(now_ms: float | None) -> float:
    return time.time() * 1000 if now_ms is None else now_ms


def _uptime(proc: Mapping[str, Any], now_ms: float) -> str:
    started = _number(_env(proc).get("pm_uptime"))
    if _status(proc) != Status.ONLINE.value or started is None:
        return "0"
    return format_uptime(now_ms - started)


def _mode(exec_mode: Any) -> tuple[str, str]:
    if exec_mode == "fork_mode":
        return "fork", "bold reverse"
    if exec_mode == "cluster_mode":
        return "cluster", "bold blue"
    return _text(exec_mode), ""


_MEASURES = {"rss": "RSS of the process tree",
             "pss": "PSS of the process tree (its RSS sum is over the limit)"}


def _memory_measure(proc: Mapping[str, Any]) -> str | None:
    """"rss" (the tree's RSS sum) or "pss" (its proportional size, shown while the RSS sum is
    over the limit), None from daemons that do not say."""
    monit = proc.get("monit")
    measure = monit.get("memory_measure") if isinstance(monit, Mapping) else None
    return measure if measure in ("rss", "pss") else None


def _monit(proc: Mapping[str, Any], key: str) -> float | None:
    monit = proc.get("monit")
    return _number(monit.get(key)) if isinstance(monit, Mapping) else None


def _iso_utc(ms: Any) -> str:
    from datetime import datetime, timezone  # describe only: not worth its import in `list`

    value = _number(ms)
    if value is None:
        return NA
    try:
        moment = datetime.fromtimestamp(int(value) // 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return NA
    # JavaScript's toISOString: millisecond precision and a Z suffix.
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{int(value) % 1000:03d}Z"


# --- display width -----------------------------------------------------------------------------

# As wcwidth measures them: marks drawn onto the previous character, invisible format characters
# (zero-width space and joiner, direction marks) and the Hangul vowels and finals that join the
# syllable before them take no cell, the soft hyphen takes one. Control characters never reach the
# table unescaped (see term.escape_controls), and take none either.
_ZERO_WIDTH_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc"})
_char_widths: dict[str, int] = {"\u00ad": 1}


def _char_width(ch: str) -> int:
    width = _char_widths.get(ch)
    if width is None:
        if unicodedata.category(ch) in _ZERO_WIDTH_CATEGORIES or "\u1160" <= ch <= "\u11ff":
            width = 0
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            width = 2
        else:
            width = 1
        _char_widths[ch] = width
    return width


def _cell_len(text: str) -> int:
    """Terminal cells ``text`` takes: wide and full-width characters 2, combining marks 0."""
    if text.isascii() and text.isprintable():
        return len(text)
    return sum(map(_char_width, text))


def _cell(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells: padded with spaces, or cut and ended with ``…``."""
    plain = text.isascii() and text.isprintable()
    used = len(text) if plain else _cell_len(text)
    if used <= width:
        return text + " " * (width - used)
    if width <= 0:
        return ""
    room = width - 1
    if plain:
        return text[:room] + "…"
    used = cut = 0
    for ch in text:
        size = _char_width(ch)
        if used + size > room:
            break
        used += size
        cut += 1
    # A wide character that would straddle the cut leaves a blank cell before the ellipsis.
    return text[:cut] + " " * (room - used) + "…"


# --- list table --------------------------------------------------------------------------------

_Cell = tuple[str, str]


def _list_cells(proc: Mapping[str, Any], now_ms: float,
                formatted: dict[Any, str] | None = None) -> dict[str, _Cell]:
    """The cells of one row; `formatted` caches cpu and memory texts across rows."""
    if formatted is None:
        formatted = {}
    env = _env(proc)
    status = _status(proc)
    stopped = status in NOT_RUNNING

    pid = proc.get("pid", _MISSING)
    pid_text = "0" if stopped else _text(pid)

    if stopped:
        cpu_text, mem_text = "0%", "0b"
    else:
        monit = proc.get("monit")
        monit = monit if isinstance(monit, Mapping) else {}
        cpu = _number(monit.get("cpu"))
        mem = _number(monit.get("memory"))
        cpu_text = formatted.get(("cpu", cpu)) or NA
        if cpu is not None and cpu_text is NA:
            cpu_text = formatted[("cpu", cpu)] = format_cpu(cpu)
        mem_text = formatted.get(("mem", mem)) or NA
        if mem is not None and mem >= 0 and mem_text is NA:
            mem_text = formatted[("mem", mem)] = format_memory(mem)
        if _memory_measure(proc) == "pss" and mem_text != NA:
            mem_text += " pss"   # the tree's proportional size: shared pages counted once

    watch = env.get("watch", _MISSING)
    if watch is _MISSING or watch is None:
        watching: _Cell = (NA, "")
    elif watch:
        watching = ("enabled", "bold green")
    else:
        watching = ("disabled", _BORDER_STYLE)

    user = env.get("username")
    if user is None:
        user = env.get("uid", _MISSING)

    return {
        "id": (_text(_pick(proc, "pm_id")), _ID_STYLE),
        "name": (_text(_pick(proc, "name")), ""),
        "namespace": (_text(env.get("namespace", _MISSING)), ""),
        "version": (_text(env.get("version", _MISSING)), ""),
        "mode": _mode(env.get("exec_mode", _MISSING)),
        "pid": (pid_text, ""),
        "uptime": (_uptime(proc, now_ms), ""),
        "restarts": (_text(env.get("restart_time", _MISSING)), ""),
        "status": (_text(status), status_style(status)),
        "cpu": (cpu_text, ""),
        "mem": (mem_text, ""),
        "user": (_text(user), "bold"),
        "watching": watching,
    }


class _Layout(NamedTuple):
    name: str
    #: (cell key, header, minimum content width: pm2's column width less its two padding cells)
    columns: tuple[tuple[str, str, int], ...]
    #: the layout is chosen only if the name column can get at least min(longest name, this)
    name_floor: int


_FULL = _Layout(
    "full",
    (
        ("id", "id", 2),
        ("name", "name", 0),
        ("namespace", "namespace", 11),
        ("version", "version", 7),
        ("mode", "mode", 7),
        ("pid", "pid", 8),
        ("uptime", "uptime", 6),
        ("restarts", "↺", 4),
        ("status", "status", 9),
        ("cpu", "cpu", 8),
        ("mem", "mem", 8),
        ("user", "user", 8),
        ("watching", "watching", 8),
    ),
    name_floor=38,
)
_CONDENSED = _Layout(
    "condensed",
    (
        ("id", "id", 2),
        ("name", "name", 0),
        ("mode", "mode", 8),
        ("restarts", "↺", 4),
        ("status", "status", 9),
        ("cpu", "cpu", 8),
        ("mem", "memory", 8),
    ),
    name_floor=18,
)
_MINI = _Layout(
    "mini",
    (
        ("id", "id", 2),
        ("name", "name", 0),
        ("status", "status", 9),
        ("restarts", "↺", 4),
        ("mem", "mem", 8),
    ),
    name_floor=14,
)
_LAYOUTS: tuple[_Layout, ...] = (_FULL, _CONDENSED, _MINI)
_CELL_KEYS = tuple(dict.fromkeys(key for layout in _LAYOUTS for key, _h, _m in layout.columns))

# pm2's name column is 11 wide when there are no processes.
_EMPTY_NAME_WIDTH = 9
_MIN_NAME_WIDTH = 4


def _table_width(content_widths: Sequence[int]) -> int:
    # Each column has one padding cell on either side, and there is a border before every column
    # plus one at the end.
    return sum(content_widths) + 3 * len(content_widths) + 1


def _widest(rows: Sequence[dict[str, _Cell]]) -> dict[str, int]:
    """The widest cell of every column, measured once for all three layouts."""
    out = {}
    for key in _CELL_KEYS:
        texts = [row[key][0] for row in rows]
        joined = "".join(texts)
        plain = joined.isascii() and joined.isprintable()   # one cell per character
        out[key] = max(map(len if plain else _cell_len, texts), default=0)
    return out


def _fit(
    layout: _Layout, widest: Mapping[str, int], has_rows: bool, width: int, *, last: bool
) -> dict[str, int] | None:
    widths: dict[str, int] = {}
    for key, header, minimum in layout.columns:
        if key == "name":
            continue
        widths[key] = max(minimum, _cell_len(header), widest[key])
    fixed = _table_width([*widths.values(), 0])

    name_need = max(_cell_len("name"), widest["name"]) if has_rows else _EMPTY_NAME_WIDTH
    if not last and fixed + min(name_need, layout.name_floor) > width:
        return None
    widths["name"] = max(min(name_need, width - fixed), _MIN_NAME_WIDTH)
    return widths


def _pick_layout(rows: Sequence[dict[str, _Cell]], width: int) -> tuple[_Layout, dict[str, int]]:
    widest = _widest(rows)
    for layout in _LAYOUTS[:-1]:
        widths = _fit(layout, widest, bool(rows), width, last=False)
        if widths is not None:
            return layout, widths
    widths = _fit(_LAYOUTS[-1], widest, bool(rows), width, last=True)
    assert widths is not None
    return _LAYOUTS[-1], widths


def choose_layout(
    procs: Sequence[Mapping[str, Any]], width: int, now_ms: float | None = None
) -> str:
    """Name of the widest layout (``full``, ``condensed``, ``mini``) that fits ``width`` cells."""
    now = _now(now_ms)
    formatted: dict[Any, str] = {}
    return _pick_layout([_list_cells(p, now, formatted) for p in procs], width)[0].name


def _sort_key(proc: Mapping[str, Any]) -> tuple[str, int, int]:
    name = _pick(proc, "name")
    pm_id = _number(_pick(proc, "pm_id"))
    name_text = "" if name is _MISSING or name is None else str(name)
    return (name_text, 0 if pm_id is not None else 1, int(pm_id) if pm_id is not None else 0)


def _shrink(widths: list[int], width: int) -> list[int]:
    """Narrow the widest columns a cell at a time until the table fits.

    Only a terminal narrower than the mini layout needs this. Every column keeps at least one cell
    of content: a terminal too narrow even for that gets a table wider than itself, never one with
    columns missing.
    """
    widths = list(widths)
    excess = _table_width(widths) - width
    while excess > 0:
        widest = max(widths)
        if widest <= 1:
            break
        # the rightmost of the widest columns gives way first
        index = len(widths) - 1 - widths[::-1].index(widest)
        widths[index] -= 1
        excess -= 1
    return widths


def _draw(
    headers: Sequence[str], rows: Sequence[Sequence[_Cell]], widths: Sequence[int], color: bool
) -> str:
    """A box-drawn table: top border, header row, a rule, one line per row, bottom border."""

    def border(left: str, middle: str, right: str) -> str:
        return left + middle.join("─" * (w + 2) for w in widths) + right

    top, rule, bottom = (paint(border(*corners), _BORDER_STYLE, color)
                         for corners in (("┌", "┬", "┐"), ("├", "┼", "┤"), ("└", "┴", "┘")))
    bar = paint("│", _BORDER_STYLE, color)
    joint = f" {bar} "

    def line(cells: Sequence[_Cell]) -> str:
        texts = []
        for (text, style), w in zip(cells, widths, strict=True):
            if len(text) <= w and text.isascii() and text.isprintable():
                padded = text.ljust(w)    # the common case, as _cell would pad it
            else:
                padded = _cell(text, w)
            # The style covers the padded content, so a reversed cell is a solid block.
            texts.append(f"{sgr(style)}{padded}{RESET}" if color and style else padded)
        return f"{bar} {joint.join(texts)} {bar}"

    lines = [top, line([(h, _HEADER_STYLE) for h in headers]), rule]
    lines.extend(map(line, rows))
    lines.append(bottom)
    return "\n".join(lines)


def render_list(
    procs: Sequence[Mapping[str, Any]],
    *,
    width: int,
    color: bool,
    now_ms: float | None = None,
    keep_order: bool = False,
) -> str:
    """The ``pyvm2 list`` table for jlist-shaped dicts, without a trailing newline; rows by name
    unless ``keep_order`` (the caller sorted them).

    Drawn by hand rather than with rich: this is the hot path of ``pyvm2 list``, and rich's import
    and table layout cost more than everything else the command does.
    """
    now = _now(now_ms)
    ordered = list(procs) if keep_order else sorted(procs, key=_sort_key)
    formatted: dict[Any, str] = {}
    rows = [_list_cells(p, now, formatted) for p in ordered]

    layout, by_key = _pick_layout(rows, width)
    keys = [key for key, _h, _m in layout.columns]
    widths = _shrink([by_key[key] for key in keys], width)
    headers = [header for _k, header, _m in layout.columns]
    return _draw(headers, [[row[key] for key in keys] for row in rows], widths, color)


# --- rich, for describe only ------------------------------------------------------------------


def _console(width: int, color: bool) -> Console:
    from rich.console import Console

    # Every setting is explicit so the environment (NO_COLOR, FORCE_COLOR, TERM=dumb, COLUMNS,
    # a pytest capture) cannot change what is rendered: the caller has already decided.
    return Console(
        file=StringIO(),
        width=max(width, 1),
        height=25,
        color_system="standard" if color else None,
        force_terminal=color,
        force_jupyter=False,
        force_interactive=False,
        no_color=not color,
        legacy_windows=False,
        markup=False,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )


def _render(renderables: Sequence[RenderableType], width: int, color: bool) -> str:
    console = _console(width, color)
    for renderable in renderables:
        console.print(renderable)
    output: str = console.file.getvalue()  # type: ignore[attr-defined]
    return output.rstrip("\n")


def _new_table(color: bool, *, show_header: bool) -> Table:
    from rich import box
    from rich.table import Table

    return Table(
        box=box.SQUARE,
        show_header=show_header,
        header_style=_HEADER_STYLE,
        border_style=_BORDER_STYLE if color else None,
        show_lines=False,
        padding=(0, 1),
        expand=False,
        highlight=False,
    )


# --- describe ----------------------------------------------------------------------------------


def _joined(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return _text(" ".join(str(v) for v in value))
    return _text(value)


def _lines(value: Any) -> str:
    """One line per item, so each warning reads on its own."""
    items = value if isinstance(value, (list, tuple)) else [value]
    texts = [_text(item) for item in items if _text(item) != NA]
    return "\n".join(texts) if texts else NA


def _next_restart(at_ms: Any, now_ms: float) -> str:
    at = _number(at_ms)
    if at is None:
        return NA
    return f"in {max(math.ceil((at - now_ms) / 1000), 0)}s"


def _milliseconds(value: Any) -> str:
    number = _number(value)
    if number is None:
        return _text(value)
    return f"{int(number)}ms" if number == int(number) else f"{number}ms"


def describe_rows(
    proc: Mapping[str, Any], now_ms: float | None = None
) -> list[tuple[str, str, str]]:
    """The describe table as (label, value, rich style) in display order."""
    env = _env(proc)
    now = _now(now_ms)
    status = _status(proc)

    def get(key: str) -> Any:
        return env.get(key, _MISSING)

    watch = get("watch")
    if watch is _MISSING or watch is None:
        watch_cell: tuple[str, str] = (NA, "")
    else:
        watch_cell = ("✔", "bold green") if watch else ("✘", "")

    rows: list[tuple[str, str, str]] = [
        ("status", _text(status), status_style(status)),
        ("name", _text(_pick(proc, "name")), ""),
        ("namespace", _text(get("namespace")), ""),
        ("version", _text(get("version")), ""),
        ("restarts", _text(get("restart_time")), ""),
        ("uptime", _uptime(proc, now), ""),
        ("script path", _text(get("pm_exec_path")), ""),
        ("script args", _joined(get("args")), ""),
        ("error log path", _text(get("pm_err_log_path")), ""),
        ("out log path", _text(get("pm_out_log_path")), ""),
        ("pid path", _text(get("pm_pid_path")), ""),
        ("interpreter", _text(get("exec_interpreter")), ""),
        ("interpreter args", _joined(get("node_args")), ""),
        ("script id", _text(_pick(proc, "pm_id")), ""),
        ("exec cwd", _text(get("pm_cwd")), ""),
        ("exec mode", _text(get("exec_mode")), ""),
        ("watch & reload", *watch_cell),
        ("unstable restarts", _text(get("unstable_restarts")), ""),
        ("created at", _iso_utc(get("created_at")), ""),
        ("kill signal", _text(get("kill_signal")), ""),
        ("kill timeout", _milliseconds(get("kill_timeout")), ""),
        ("status reason", _text(get("status_reason")), ""),
        ("next restart", _next_restart(get("next_restart_at"), now), ""),
        ("last restart reason", _text(get("last_restart_reason")), ""),
        ("source", _text(get("source")), ""),
        ("warnings", _lines(get("warnings")), ""),
    ]

    # Same positions as pm2's describe, which splices these in after building the table.
    if env.get("pm_log_path") is not None:
        rows.insert(6, ("entire log path", _text(env["pm_log_path"]), ""))
    if env.get("cron_restart") is not None:
        rows.insert(5, ("cron restart", _text(env["cron_restart"]), ""))
    if env.get("status_text"):
        rows.append(("app status", _text(env["status_text"]), ""))
    if env.get("listen"):
        rows.append(("listen", ", ".join(map(str, env["listen"])), ""))
    if env.get("wait_ready"):
        rows.append(("wait ready", f"yes (listen_timeout {_milliseconds(env.get('listen_timeout'))})",
                     ""))
    max_memory = _number(env.get("max_memory_restart"))
    if max_memory:
        rows.insert(5, ("max memory restart", format_memory(max_memory), ""))
        measure = _memory_measure(proc)
        if measure is not None and status not in NOT_RUNNING:
            rows.insert(6, ("memory measure", _MEASURES[measure], ""))
    return rows


def render_describe(
    proc: Mapping[str, Any],
    *,
    width: int,
    color: bool,
    now_ms: float | None = None,
) -> str:
    """pm2's describe output for one jlist-shaped dict: the inverse title, then a key/value table."""
    from rich.text import Text

    title = Text(
        f" Describing process with id {_text(_pick(proc, 'pm_id'))}"
        f" - name {_text(_pick(proc, 'name'))} ",
        style="bold reverse",
    )
    table = _new_table(color, show_header=False)
    table.add_column(style=_HEADER_STYLE, no_wrap=True)
    table.add_column(overflow="fold")
    for label, value, style in describe_rows(proc, now_ms):
        table.add_row(Text(label), Text(value, style=style))
    return _render([title, table], width, color)
