"""Tests for pyvm2.cli.render: pm2's formatters, the list table's layouts and describe."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

import pyvm2.cli.render as render_module
from pyvm2.cli import term
from pyvm2.cli.render import (
    choose_layout,
    describe_rows,
    format_cpu,
    format_memory,
    format_uptime,
    render_describe,
    render_list,
)
from pyvm2.cli.term import STATUS_STYLES
from pyvm2.status import Status

NOW = 1_700_000_000_000.0
FULL_HEADERS = [
    "id",
    "name",
    "namespace",
    "version",
    "mode",
    "pid",
    "uptime",
    "↺",
    "status",
    "cpu",
    "mem",
    "user",
    "watching",
]
CONDENSED_HEADERS = ["id", "name", "mode", "↺", "status", "cpu", "memory"]
MINI_HEADERS = ["id", "name", "status", "↺", "mem"]


def make_proc(
    name: str = "api",
    pm_id: int = 0,
    status: str = "online",
    *,
    pid: int | None = 4321,
    memory: int = 13_841_203,
    cpu: float = 1.26,
    **env: Any,
) -> dict[str, Any]:
    pm2_env: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "status": status,
        "restart_time": 7,
        "unstable_restarts": 2,
        "pm_uptime": NOW - 5 * 3600 * 1000,
        "created_at": 1_699_990_000_123,
        "exit_code": None,
        "pm_cwd": "/srv/app",
        "pm_exec_path": "/srv/app/main.py",
        "args": ["--port", "8080"],
        "exec_interpreter": "python3",
        "node_args": [],
        "pm_out_log_path": "/home/u/.pyvm2/logs/api-out.log",
        "pm_err_log_path": "/home/u/.pyvm2/logs/api-error.log",
        "pm_log_path": None,
        "pm_pid_path": "/home/u/.pyvm2/pids/api-0.pid",
        "exec_mode": "fork_mode",
        "instances": 1,
        "watch": False,
        "autorestart": True,
        "username": "deploy",
        "version": "N/A",
        "max_memory_restart": None,
        "cron_restart": None,
        "kill_signal": "SIGINT",
        "kill_timeout": 1600,
        "min_uptime": 1000,
        "max_restarts": 16,
        "restart_delay": 0,
        "status_reason": None,
        "next_restart_at": None,
        "last_restart_reason": None,
        "unstable": False,
        "source": None,
        "warnings": [],
        "pm_id": pm_id,
    }
    pm2_env.update(env)
    return {
        "pid": pid,
        "name": name,
        "pm_id": pm_id,
        "monit": {"memory": memory, "cpu": cpu},
        "pm2_env": pm2_env,
    }


def header_cells(table: str) -> list[str]:
    header_line = table.splitlines()[1]
    return [cell.strip() for cell in header_line.strip("│").split("│")]


def row_for(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if len(cells) > 1 and cells[1] == name:
            return cells
    raise AssertionError(f"no row named {name!r} in:\n{table}")


def column(table: str, header: str, name: str) -> str:
    return row_for(table, name)[header_cells(table).index(header)]


# --- formatters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (1, "1s"),
        (90, "90s"),
        (119, "119s"),
        (120, "2m"),
        (7199, "119m"),
        (7200, "2h"),
        (2 * 86400, "2D"),
        (60 * 86400, "2M"),
        (2 * 365 * 86400, "2Y"),
    ],
)
def test_format_uptime_uses_a_unit_only_when_its_count_is_above_one(
    seconds: int, expected: str
) -> None:
    assert format_uptime(seconds * 1000) == expected


def test_format_uptime_floors_partial_seconds_and_clamps_clock_skew() -> None:
    assert format_uptime(1999.9) == "1s"
    assert format_uptime(-5000) == "0s"


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [
        (0, "0b"),
        (512, "512b"),
        (1023, "1023b"),
        (1024, "1.0kb"),
        (3174, "3.1kb"),
        (1280, "1.3kb"),
        (13_841_203, "13.2mb"),
        (104_857_600, "100.0mb"),
        (1024**3, "1.0gb"),
        (3 * 1024**4, "3.0tb"),
    ],
)
def test_format_memory_matches_pm2_bytes_to_size(num_bytes: int, expected: str) -> None:
    assert format_memory(num_bytes) == expected


@pytest.mark.parametrize(
    ("pct", "expected"),
    [(0, "0%"), (0.0, "0%"), (1.3, "1.3%"), (1.26, "1.3%"), (12.0, "12%"), (100, "100%")],
)
def test_format_cpu_rounds_to_one_decimal(pct: float, expected: str) -> None:
    assert format_cpu(pct) == expected


def test_status_styles_follow_pm2_colours() -> None:
    assert set(STATUS_STYLES) == {s.value for s in Status}
    assert STATUS_STYLES["online"] == "bold green"
    assert STATUS_STYLES["launching"] == "bold blue"
    for status in ("stopping", "stopped", "waiting restart", "errored"):
        assert STATUS_STYLES[status] == "bold red"


# --- list layouts --------------------------------------------------------------------------------


def test_full_table_at_200_columns_has_all_thirteen_headers() -> None:
    out = render_list([make_proc()], width=200, color=False, now_ms=NOW)
    assert header_cells(out) == FULL_HEADERS
    assert choose_layout([make_proc()], 200, now_ms=NOW) == "full"


def test_full_table_cells_for_an_online_app() -> None:
    out = render_list([make_proc(watch=True)], width=200, color=False, now_ms=NOW)
    assert row_for(out, "api") == [
        "0",
        "api",
        "default",
        "N/A",
        "fork",
        "4321",
        "5h",
        "7",
        "online",
        "1.3%",
        "13.2mb",
        "deploy",
        "enabled",
    ]


def test_condensed_table_at_100_columns() -> None:
    out = render_list([make_proc()], width=100, color=False, now_ms=NOW)
    assert header_cells(out) == CONDENSED_HEADERS
    assert row_for(out, "api") == ["0", "api", "fork", "7", "online", "1.3%", "13.2mb"]
    assert all(cell_len(line) <= 100 for line in out.splitlines())


def test_80_columns_keeps_name_status_restarts_and_memory_readable() -> None:
    procs = [
        make_proc("api", 0),
        make_proc("a-rather-long-worker-name", 1, "waiting restart", restart_time=12),
        make_proc("billing", 2, "errored", restart_time=16),
    ]
    out = render_list(procs, width=80, color=False, now_ms=NOW)
    assert all(cell_len(line) <= 80 for line in out.splitlines()), out
    headers = header_cells(out)
    assert {"name", "status", "↺"} <= set(headers)
    mem_header = "memory" if "memory" in headers else "mem"
    assert column(out, "status", "api") == "online"
    assert column(out, "↺", "api") == "7"
    assert column(out, mem_header, "api") == "13.2mb"
    assert column(out, "status", "billing") == "errored"
    assert column(out, "↺", "billing") == "16"
    waiting = next(line for line in out.splitlines() if "waiting restart" in line)
    assert "12" in waiting
    assert "a-rather-long" in waiting


def test_60_columns_falls_back_to_the_mini_layout() -> None:
    out = render_list([make_proc()], width=60, color=False, now_ms=NOW)
    assert header_cells(out) == MINI_HEADERS
    assert row_for(out, "api") == ["0", "api", "online", "7", "13.2mb"]
    assert all(cell_len(line) <= 60 for line in out.splitlines())


def test_a_long_name_is_truncated_with_an_ellipsis_when_space_runs_out() -> None:
    long_name = "x" * 60
    out = render_list([make_proc(long_name)], width=80, color=False, now_ms=NOW)
    assert all(cell_len(line) <= 80 for line in out.splitlines())
    assert "…" in out
    assert long_name not in out


def test_a_long_name_is_shown_whole_when_the_terminal_is_wide_enough() -> None:
    long_name = "y" * 60
    out = render_list([make_proc(long_name)], width=300, color=False, now_ms=NOW)
    assert long_name in out
    assert header_cells(out) == FULL_HEADERS


@pytest.mark.parametrize("width", [60, 80, 100, 120, 140, 200])
def test_every_line_fits_the_width(width: int) -> None:
    procs = [make_proc(f"app-{i}", i) for i in range(12)]
    out = render_list(procs, width=width, color=False, now_ms=NOW)
    assert all(cell_len(line) <= width for line in out.splitlines())


def test_an_empty_list_still_prints_the_header_row() -> None:
    out = render_list([], width=200, color=False, now_ms=NOW)
    assert header_cells(out) == FULL_HEADERS
    assert out.splitlines()[0].startswith("┌")
    assert out.splitlines()[-1].startswith("└")


def test_box_borders_without_row_separators() -> None:
    procs = [make_proc("a", 0), make_proc("b", 1), make_proc("c", 2)]
    lines = render_list(procs, width=200, color=False, now_ms=NOW).splitlines()
    # top border, header, header rule, three rows, bottom border
    assert len(lines) == 7
    assert lines[2].startswith("├")
    assert not any(line.startswith("├") for line in lines[3:6])


# --- rows ------------------------------------------------------------------------------------------


def test_rows_are_sorted_by_name_then_id() -> None:
    procs = [
        make_proc("worker", 3),
        make_proc("api", 5),
        make_proc("worker", 1),
        make_proc("api", 2),
        make_proc("billing", 0),
    ]
    out = render_list(procs, width=200, color=False, now_ms=NOW)
    body = out.splitlines()[3:-1]
    order = [[c.strip() for c in line.strip("│").split("│")][:2] for line in body]
    assert order == [["2", "api"], ["5", "api"], ["0", "billing"], ["1", "worker"], ["3", "worker"]]


def test_a_stopped_app_shows_pid_uptime_cpu_and_memory_as_zero() -> None:
    proc = make_proc("idle", 4, "stopped", pid=None, memory=999_999, cpu=3.0)
    out = render_list([proc], width=200, color=False, now_ms=NOW)
    cells = dict(zip(header_cells(out), row_for(out, "idle"), strict=True))
    assert cells["pid"] == "0"
    assert cells["uptime"] == "0"
    assert cells["cpu"] == "0%"
    assert cells["mem"] == "0b"
    assert cells["status"] == "stopped"


def test_an_app_without_a_pid_yet_shows_na() -> None:
    proc = make_proc("starting", 1, "launching", pid=None)
    out = render_list([proc], width=200, color=False, now_ms=NOW)
    assert column(out, "pid", "starting") == "N/A"
    assert column(out, "uptime", "starting") == "0"


def test_cluster_mode_and_disabled_watch() -> None:
    proc = make_proc("web", 0, exec_mode="cluster_mode", watch=False)
    out = render_list([proc], width=200, color=False, now_ms=NOW)
    assert column(out, "mode", "web") == "cluster"
    assert column(out, "watching", "web") == "disabled"


def test_watch_as_a_list_of_paths_counts_as_enabled() -> None:
    out = render_list([make_proc(watch=["src"])], width=200, color=False, now_ms=NOW)
    assert column(out, "watching", "api") == "enabled"


def test_missing_keys_show_na_instead_of_crashing() -> None:
    procs: list[dict[str, Any]] = [
        {"name": "bare"},
        {"name": "partial", "pm_id": 3, "pm2_env": {"status": "online"}},
        {},
    ]
    for width in (200, 100, 60):
        out = render_list(procs, width=width, color=False, now_ms=NOW)
        assert "N/A" in out
    full = render_list(procs, width=200, color=False, now_ms=NOW)
    bare = dict(zip(header_cells(full), row_for(full, "bare"), strict=True))
    assert bare["id"] == "N/A"
    assert bare["status"] == "N/A"
    assert bare["pid"] == "N/A"
    assert bare["mem"] == "N/A"
    assert bare["watching"] == "N/A"
    partial = dict(zip(header_cells(full), row_for(full, "partial"), strict=True))
    assert partial["uptime"] == "0"
    assert partial["cpu"] == "N/A"


def test_a_cjk_name_keeps_every_line_the_same_display_width() -> None:
    procs = [make_proc("数据处理器", 0), make_proc("api", 1), make_proc("ワーカー", 2, "stopped")]
    for width in (200, 100, 80, 60):
        out = render_list(procs, width=width, color=False, now_ms=NOW)
        widths = {cell_len(line) for line in out.splitlines()}
        assert len(widths) == 1, out
        assert widths.pop() <= width
        assert "数据处理器" in out


def test_a_truncated_cjk_name_still_aligns() -> None:
    procs = [make_proc("非常に長いアプリケーションの名前です" * 2, 0), make_proc("api", 1)]
    out = render_list(procs, width=80, color=False, now_ms=NOW)
    assert len({cell_len(line) for line in out.splitlines()}) == 1, out


def test_control_characters_in_a_name_are_escaped_not_emitted() -> None:
    out = render_list([make_proc("evil\x1b[31mred\nline")], width=200, color=False, now_ms=NOW)
    assert "\x1b" not in out
    assert "\\x1b[31mred\\nline" in out


# --- colour ------------------------------------------------------------------------------------


def test_no_escape_codes_at_all_when_colour_is_off() -> None:
    procs = [
        make_proc("a", 0, "online", watch=True),
        make_proc("b", 1, "errored"),
        make_proc("c", 2, "launching", exec_mode="cluster_mode"),
    ]
    for width in (200, 100, 60):
        assert "\x1b" not in render_list(procs, width=width, color=False, now_ms=NOW)
    assert "\x1b" not in render_describe(procs[0], width=100, color=False, now_ms=NOW)


def test_no_escape_codes_when_colour_is_off_even_if_the_environment_forces_colour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "40")
    out = render_list([make_proc()], width=200, color=False, now_ms=NOW)
    assert "\x1b" not in out
    assert header_cells(out) == FULL_HEADERS


def test_colours_follow_pm2_when_colour_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # The caller decides colour; NO_COLOR and TERM=dumb in the environment must not undo it.
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    procs = [
        make_proc("on", 0, "online", watch=True),
        make_proc("off", 1, "stopped"),
        make_proc("up", 2, "launching"),
    ]
    out = render_list(procs, width=200, color=True, now_ms=NOW)
    assert "\x1b[1;32monline" in out
    assert "\x1b[1;31mstopped" in out
    assert "\x1b[1;34mlaunching" in out
    assert "\x1b[1;32menabled" in out
    assert "\x1b[90mdisabled" in out
    assert "\x1b[1;36mid" in out
    assert "\x1b[90m┌" in out
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert all(cell_len(line) <= 200 for line in plain.splitlines())
    assert plain == render_list(procs, width=200, color=False, now_ms=NOW)


def test_every_cell_gets_its_style_and_the_padding_stays_inside_it() -> None:
    procs = [
        make_proc("fk", 0, "online", watch=True),
        make_proc("cl", 1, "errored", exec_mode="cluster_mode"),
        make_proc("odd", 2, "exploded", watch=None),
    ]
    out = render_list(procs, width=200, color=True, now_ms=NOW)
    # a reversed cell is one solid block the width of its column
    assert "\x1b[1;7mfork   \x1b[0m" in out
    assert "\x1b[1;34mcluster\x1b[0m" in out
    assert "\x1b[1;31merrored  \x1b[0m" in out
    # pm2 paints statuses it does not know red
    assert "\x1b[1;31mexploded \x1b[0m" in out
    assert "\x1b[1mdeploy  \x1b[0m" in out
    assert "\x1b[1;36m0 \x1b[0m" in out
    assert "\x1b[90m│\x1b[0m" in out
    # every escape is closed on its own line: colour never leaks into the next line
    for line in out.splitlines():
        assert line.endswith("\x1b[0m"), repr(line)
    # cells without a style get no escape codes
    row = next(line for line in out.splitlines() if "odd" in line)
    assert "\x1b[90m│\x1b[0m odd " in row
    assert " N/A      \x1b[90m│\x1b[0m" in row


@pytest.mark.parametrize(
    ("style", "sgr"),
    [
        ("bold green", "\x1b[1;32m"),
        ("bright_black", "\x1b[90m"),
        ("bold reverse", "\x1b[1;7m"),
        ("reverse bold", "\x1b[1;7m"),
        ("underline yellow on blue", "\x1b[4;33;44m"),
        ("bright_white on bright_red", "\x1b[97;101m"),
        ("", ""),
    ],
)
def test_rich_style_names_map_to_sgr_codes(style: str, sgr: str) -> None:
    assert term.sgr(style) == sgr


WIDE_PROCS = [
    make_proc("数据处理器", 0),
    make_proc("api", 1, watch=True),
    make_proc("ワーカー", 2, "stopped"),
    make_proc("cafe\u0301-e\u0301", 3, "waiting restart"),
    make_proc("ｆｕｌｌ", 4, "launching", exec_mode="cluster_mode"),
    make_proc("emoji😀x", 5, "errored", username="日本語ユーザー"),
    make_proc("非常に長いアプリケーションの名前です" * 2, 6),
    make_proc("x" * 70, 7),
]


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("width", [45, 50, 60, 70, 80, 81, 99, 100, 120, 160, 200, 300])
@pytest.mark.parametrize("color", [False, True])
def test_every_line_has_the_same_display_width(width: int, color: bool) -> None:
    out = render_list(WIDE_PROCS, width=width, color=color, now_ms=NOW)
    lines = plain(out).splitlines()
    assert len(lines) == len(WIDE_PROCS) + 4
    widths = {cell_len(line) for line in lines}
    assert len(widths) == 1, out
    assert widths.pop() <= width


def test_wide_characters_combining_marks_and_emoji_take_their_real_width() -> None:
    assert render_module._cell_len("api") == 3
    assert render_module._cell_len("数据") == 4
    assert render_module._cell_len("ｆｕｌｌ") == 8
    assert render_module._cell_len("e\u0301") == 1
    assert render_module._cell_len("z\u200bw") == 2
    assert render_module._cell_len("😀") == 2
    assert render_module._cell_len("soft\u00adhyphen") == 11
    assert render_module._cell_len("\u1100\u1161\u11a8") == 2  # a Hangul syllable in jamo


def test_a_wide_character_cut_in_half_leaves_a_blank_before_the_ellipsis() -> None:
    assert render_module._cell("数据处理器", 6) == "数据 …"
    assert render_module._cell("数据处理器", 5) == "数据…"
    assert render_module._cell("数据处理器", 10) == "数据处理器"
    assert render_module._cell("cafe\u0301s", 5) == "cafe\u0301s"
    assert render_module._cell("cafe\u0301s", 4) == "caf…"
    assert render_module._cell("abc", 5) == "abc  "
    assert render_module._cell("abcdef", 1) == "…"


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160, 200, 300])
def test_the_plain_table_is_drawn_exactly_as_richs_square_box_table(width: int) -> None:
    # The table used to be rich's; what users see must not change. Rendered here with rich from the
    # same cells and column widths.
    from io import StringIO

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = [
        render_module._list_cells(p, NOW)
        for p in sorted([*WIDE_PROCS, {}, {"name": "bare"}], key=render_module._sort_key)
    ]
    layout, widths = render_module._pick_layout(rows, width)
    table = Table(box=box.SQUARE, padding=(0, 1), expand=False, highlight=False)
    for key, header, _minimum in layout.columns:
        table.add_column(header, width=widths[key], no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(Text(row[key][0]) for key, _h, _m in layout.columns))
    console = Console(file=StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(table)
    expected = console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]

    procs = [*WIDE_PROCS, {}, {"name": "bare"}]
    assert render_list(procs, width=width, color=False, now_ms=NOW) == expected


@pytest.mark.parametrize("width", [25, 30, 35, 40])
def test_a_terminal_narrower_than_the_mini_layout_narrows_the_widest_columns(width: int) -> None:
    procs = [make_proc("api", 0), make_proc("worker", 1, "waiting restart")]
    out = render_list(procs, width=width, color=False, now_ms=NOW)
    lines = out.splitlines()
    assert {cell_len(line) for line in lines} == {width}
    # every column keeps at least a cell; the short id column gives way last
    assert len(header_cells(out)) == len(MINI_HEADERS)
    assert [line.split("│")[1].strip() for line in lines[3:5]] == ["0", "1"]
    assert "…" in out


def test_a_terminal_too_narrow_for_any_table_still_gets_every_column() -> None:
    out = render_list([make_proc()], width=5, color=False, now_ms=NOW)
    lines = out.splitlines()
    # one cell per column is the floor: wider than the terminal, but never broken
    assert len({cell_len(line) for line in lines}) == 1
    assert lines[0] == "┌───┬───┬───┬───┬───┐"


def test_listing_does_not_import_rich() -> None:
    # `pyvm2 list` starts fast because the table is drawn without rich.
    code = (
        "import sys\n"
        "import pyvm2.cli.render as r\n"
        "procs = [{'name': 'api', 'pm_id': 0, 'pid': 1, 'monit': {'memory': 2048, 'cpu': 1.5},\n"
        "          'pm2_env': {'status': 'online', 'exec_mode': 'fork_mode', 'watch': True,\n"
        "                      'pm_uptime': 0, 'restart_time': 0, 'username': 'u'}},\n"
        "         {'name': '数据', 'pm2_env': {'status': 'errored'}}]\n"
        "for width in (300, 120, 100, 60, 30):\n"
        "    for color in (True, False):\n"
        "        assert r.render_list(procs, width=width, color=color)\n"
        "    r.choose_layout(procs, width)\n"
        "assert r.render_list([], width=120, color=True)\n"
        "loaded = sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_a_thousand_rows_render_in_both_modes() -> None:
    procs = [
        make_proc(f"app-{i}", i, ("online", "stopped", "errored")[i % 3], watch=bool(i % 2))
        for i in range(1000)
    ]
    # how fast `pyvm2 list` is with 1000 apps is measured in bench/ (scale_list)
    for color in (False, True):
        out = render_list(procs, width=300, color=color, now_ms=NOW)
        assert len(out.splitlines()) == 1004


# --- describe ------------------------------------------------------------------------------------


def describe_table(out: str) -> dict[str, str]:
    cells: dict[str, str] = {}
    last = ""
    for line in out.splitlines()[2:-1]:
        key, value = (part.strip() for part in line.strip("│").split("│", 1))
        if key:
            cells[key] = value
            last = key
        else:
            # a value that wrapped continues on lines with an empty label
            cells[last] += "\n" + value
    return cells


def test_describe_prints_pm2s_title_and_rows() -> None:
    proc = make_proc("api", 0, "online", node_args=["-X", "dev"])
    out = render_describe(proc, width=120, color=False, now_ms=NOW)
    assert out.splitlines()[0] == " Describing process with id 0 - name api "
    rows = describe_table(out)
    assert list(rows) == [
        "status",
        "name",
        "namespace",
        "version",
        "restarts",
        "uptime",
        "script path",
        "script args",
        "error log path",
        "out log path",
        "pid path",
        "interpreter",
        "interpreter args",
        "script id",
        "exec cwd",
        "exec mode",
        "watch & reload",
        "unstable restarts",
        "created at",
        "kill signal",
        "kill timeout",
        "status reason",
        "next restart",
        "last restart reason",
        "source",
        "warnings",
    ]
    assert rows["status"] == "online"
    assert rows["restarts"] == "7"
    assert rows["uptime"] == "5h"
    assert rows["script path"] == "/srv/app/main.py"
    assert rows["script args"] == "--port 8080"
    assert rows["interpreter args"] == "-X dev"
    assert rows["script id"] == "0"
    assert rows["exec mode"] == "fork_mode"
    assert rows["watch & reload"] == "✘"
    assert rows["unstable restarts"] == "2"
    assert rows["created at"] == "2023-11-14T19:26:40.123Z"
    assert rows["kill signal"] == "SIGINT"
    assert rows["kill timeout"] == "1600ms"
    assert rows["status reason"] == "N/A"
    assert rows["next restart"] == "N/A"
    assert rows["warnings"] == "N/A"


def test_describe_optional_rows_appear_where_pm2_puts_them() -> None:
    proc = make_proc(
        "api",
        0,
        pm_log_path="/logs/api.log",
        cron_restart="0 3 * * *",
        max_memory_restart=100 * 1024 * 1024,
    )
    labels = [label for label, _value, _style in describe_rows(proc, NOW)]
    assert labels[4:10] == [
        "restarts",
        "max memory restart",
        "cron restart",
        "uptime",
        "entire log path",
        "script path",
    ]
    values = {label: value for label, value, _style in describe_rows(proc, NOW)}
    assert values["max memory restart"] == "100.0mb"
    assert values["cron restart"] == "0 3 * * *"
    assert values["entire log path"] == "/logs/api.log"


def test_describe_pyvm2_rows_for_an_app_waiting_to_restart() -> None:
    proc = make_proc(
        "api",
        0,
        "waiting restart",
        watch=True,
        status_reason="exited with code 1",
        next_restart_at=NOW + 2500,
        last_restart_reason="memory 134.2M > 100M",
        source="/srv/app/ecosystem.json",
        warnings=["unknown key 'foo' ignored", "cluster mode runs fork instances"],
        node_args=[],
        args=[],
    )
    out = render_describe(proc, width=120, color=False, now_ms=NOW)
    rows = describe_table(out)
    assert rows["status"] == "waiting restart"
    assert rows["uptime"] == "0"
    assert rows["watch & reload"] == "✔"
    assert rows["status reason"] == "exited with code 1"
    assert rows["next restart"] == "in 3s"
    assert rows["last restart reason"] == "memory 134.2M > 100M"
    assert rows["source"] == "/srv/app/ecosystem.json"
    assert rows["warnings"] == "unknown key 'foo' ignored\ncluster mode runs fork instances"
    assert rows["script args"] == "N/A"
    assert rows["interpreter args"] == "N/A"


def test_describe_with_missing_keys_shows_na() -> None:
    out = render_describe({}, width=80, color=False, now_ms=NOW)
    assert out.splitlines()[0] == " Describing process with id N/A - name N/A "
    rows = describe_table(out)
    assert rows["status"] == "N/A"
    assert rows["created at"] == "N/A"
    assert rows["uptime"] == "0"
    assert "max memory restart" not in rows


def test_describe_fits_narrow_terminals_by_folding_long_values() -> None:
    long_path = "/very/deep/" + "nested/" * 20 + "main.py"
    proc = make_proc(pm_exec_path=long_path)
    out = render_describe(proc, width=60, color=False, now_ms=NOW)
    assert all(cell_len(line) <= 60 for line in out.splitlines())
    assert describe_table(out)["script path"].replace("\n", "") == long_path


def test_describe_colours_status_and_labels() -> None:
    out = render_describe(make_proc(watch=True), width=120, color=True, now_ms=NOW)
    assert "\x1b[1;32monline" in out
    assert "\x1b[1;36mstatus" in out
    assert "\x1b[1;32m✔" in out
    assert "\x1b[1;7m Describing process with id 0 - name api " in out


def test_rich_is_imported_only_inside_functions() -> None:
    # `pyvm2 list` must start fast: importing the module may not pull rich in.
    tree = ast.parse(Path(render_module.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If):
            continue  # the TYPE_CHECKING block
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        assert not any(name == "rich" or name.startswith("rich.") for name in names), names
