"""Every bad ecosystem file is refused before anything starts: exit 2, the place of the error on
the first line, a hint, no traceback."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Pyvm2, fixture, processes_of_home

GOOD = fixture("show_env.py")

#: The error's place: `file:line:col:` (LOC) or `file: apps[N].key:` (KEY, line:col optional).
LOC = "loc"
KEY = "key"
FILE = "file"


def js(apps: list[dict]) -> str:
    return json.dumps({"apps": apps}, indent=2)


def write_binary(path: Path) -> None:
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)


def write_huge(path: Path) -> None:
    filler = json.dumps({"name": "pad", "script": GOOD, "env": {"X": "y" * 1000}})
    body = '{"apps": [' + ",".join([filler] * 10_500) + "]}"
    assert len(body) > 10 * 1024 * 1024
    path.write_text(body)


def make_dir(path: Path) -> None:
    path.mkdir()


CASES: dict[str, tuple[str | Callable[[Path], None], str, str | None]] = {
    # name: (file content or writer, where the error must point, text the first line must hold)
    "syntax error": ('{\n  "apps": [\n    {"name": "a", "script": "x.py",,}\n  ]\n', LOC, None),
    "unterminated": ('{"apps": [{"name": "a", "script": "x.py"}', LOC, None),
    "empty file": ("", FILE, None),
    "only whitespace": ("  \n\n  ", FILE, None),
    "apps not a list": ('{"apps": 5}', KEY, "apps"),
    "app not an object": ('{"apps": ["show_env.py"]}', KEY, "apps[0]"),
    "no script": (js([{"name": "a"}]), KEY, "script"),
    "missing script": (js([{"name": "a", "script": "no_such_script.py"}]), KEY,
                       "no_such_script.py"),
    "interpreter not on PATH": (js([{"name": "a", "script": GOOD,
                                     "exec_interpreter": "python3.99"}]), KEY, "python3.99"),
    "duplicate name": (js([{"name": "a", "script": GOOD}, {"name": "a", "script": GOOD}]),
                       KEY, "apps[1]"),
    "size with words": (js([{"name": "a", "script": GOOD, "max_memory_restart": "100 megs"}]),
                        KEY, "100 megs"),
    "negative fractional instances": (js([{"name": "a", "script": GOOD, "instances": -3.5}]),
                                      KEY, "instances"),
    "autorestart as a string": (js([{"name": "a", "script": GOOD, "autorestart": "maybe"}]),
                                KEY, "autorestart"),
    "binary file": (write_binary, FILE, None),
    "10 MB file": (write_huge, FILE, None),
    "a directory": (make_dir, FILE, None),
    "js expression": ('{"apps": [{"name": "x-" + (1 + 2), "script": "show_env.py"}]}', LOC, None),
    "fullwidth colon": ('{"apps": [{"name": "up4", "script": "show_env.py", "cwd"："../"}]}',
                        LOC, None),
}


def first_line_pattern(where: str) -> str:
    path = r"(?:\S*/)?eco\.json"
    if where == LOC:
        return rf"{path}:\d+:\d+: "
    if where == KEY:
        return rf"{path}(?::\d+:\d+)?: apps(?:\[\d+\])?(?:\.\w+)?: "
    return rf"{path}(?::\d+:\d+)?: "


def assert_nothing_started(pv: Pyvm2) -> None:
    if pv.daemon_pid() is not None:
        assert pv.jlist() == [], "a bad file started something"
    apps = [p for p in processes_of_home(pv.home) if "pyvm2.daemon" not in " ".join(p.cmdline())]
    assert apps == [], [p.cmdline() for p in apps]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_ecosystem_file_is_refused_with_its_place_and_a_hint(pv: Pyvm2, case: str) -> None:
    content, where, needle = CASES[case]
    path = pv.workdir / "eco.json"
    if callable(content):
        content(path)
    else:
        path.write_text(content, encoding="utf-8")
    (pv.workdir / "show_env.py").write_text(Path(GOOD).read_text())

    r = pv.run("start", "eco.json", timeout=60)
    assert "Traceback" not in r.out + r.err, r
    assert r.code == 2, r
    first = r.first_err_line
    assert re.search(r"^\[PYVM2\]\[ERROR\] " + first_line_pattern(where), first), r
    if needle:
        assert needle in first, r
    assert "hint" in r.err.lower(), r
    assert len(r.err.splitlines()) < 20, r
    assert_nothing_started(pv)


def test_one_invalid_app_means_no_app_of_the_file_starts(pv: Pyvm2) -> None:
    eco = pv.write_eco([{"name": "good", "script": GOOD},
                        {"name": "bad", "script": GOOD, "max_memory_restart": "lots"}])
    r = pv.run("start", str(eco))
    assert r.code == 2, r
    assert "Traceback" not in r.out + r.err
    assert "apps[1].max_memory_restart" in r.first_err_line, r
    assert_nothing_started(pv)


def test_every_error_of_a_file_is_listed_up_to_a_bound_with_the_count(pv: Pyvm2) -> None:
    three = pv.write_eco([{"name": "a", "script": "nope.py"}, {"name": "b", "script": GOOD},
                          {"name": "c", "script": GOOD, "max_memory_restart": "lots"},
                          {"name": "d"}], "three.json")
    r = pv.run("start", str(three))
    assert r.code == 2 and "Traceback" not in r.err, r
    errors = [ln for ln in r.err.splitlines() if ln.startswith("[PYVM2][ERROR]")]
    assert [re.search(r"apps\[\d\]", e).group() for e in errors[:3]] == \
        ["apps[0]", "apps[2]", "apps[3]"], r.err
    assert errors[3] == "[PYVM2][ERROR] 3 errors; nothing was started or changed", r.err
    assert r.err.count("hint:") == 3, r.err

    many = pv.write_eco([{"name": f"x{i}", "script": GOOD, "instances": "many"}
                         for i in range(25)], "many.json")
    r = pv.run("start", str(many))
    errors = [ln for ln in r.err.splitlines() if ln.startswith("[PYVM2][ERROR]")]
    assert r.code == 2 and len(errors) == 21, r.err
    assert errors[-1] == "[PYVM2][ERROR] 25 errors (5 more not shown); nothing was started or changed"
    assert_nothing_started(pv)


def test_one_invalid_app_in_a_second_start_leaves_the_running_apps_alone(pv: Pyvm2) -> None:
    apps = [{"name": "good", "script": GOOD}]
    eco = pv.write_eco(apps)
    pv.ok("start", str(eco))
    pid = pv.proc("good")["pid"]
    pv.write_eco(apps + [{"name": "bad", "script": GOOD, "instances": "many"}])
    r = pv.run("start", str(eco))
    assert r.code == 2, r
    assert [(p["name"], p["pid"]) for p in pv.jlist()] == [("good", pid)]


def test_unknown_key_warns_with_a_suggestion_and_the_app_still_starts(pv: Pyvm2) -> None:
    eco = pv.write_eco([{"name": "typo", "script": GOOD, "max_memory_restar": "100M"}])
    r = pv.ok("start", str(eco))
    warnings = [ln for ln in r.err.splitlines() if "WARN" in ln]
    suggestion = [w.lower().split("did you mean", 1) for w in warnings
                  if "max_memory_restar" in w and "did you mean" in w.lower()]
    assert any("max_memory_restart" in after for _, after in suggestion), r
    assert pv.status("typo") == ["online"]


def test_a_missing_ecosystem_file_is_an_error(pv: Pyvm2) -> None:
    r = pv.run("start", "nowhere.json")
    assert r.code in (1, 2), r
    assert "Traceback" not in r.out + r.err
    assert "nowhere.json" in r.err, r
    assert_nothing_started(pv)


def test_json5_syntax_is_accepted(pv: Pyvm2) -> None:
    body = (
        "// pm2 accepts JavaScript-ish JSON\n"
        "{\n"
        "  apps: [\n"
        f"    {{name: 'five', script: '{GOOD}', args: ['a', 'b',],}}, // trailing commas\n"
        "  ],\n"
        "}\n"
    )
    eco = pv.write_eco(body)
    pv.ok("start", str(eco))
    p = pv.proc("five")
    assert p["pm2_env"]["status"] == "online"
    assert p["pm2_env"]["args"] == ["a", "b"]
