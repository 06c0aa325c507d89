"""pm2-compatible formatting and parsing of the command line: prettylist's util.inspect text, the
argv conventions, the hints for unknown commands, --sort and -m."""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess

import pytest

from pyvm2 import options
from pyvm2.cli import argv as argvmod
from pyvm2.cli import hints
from pyvm2.cli.jsinspect import inspect
from pyvm2.cli.more import SAMPLE_FULL, SAMPLE_SIMPLE, empty_dump, render_mini, sort_procs
from pyvm2.errors import UsageError


def proc(pm_id, name, status="online", cpu=0.0, mem=0, restarts=0, uptime=0, pid=100):
    return {"pid": pid, "name": name, "pm_id": pm_id, "monit": {"memory": mem, "cpu": cpu},
            "pm2_env": {"name": name, "namespace": "default", "status": status,
                        "restart_time": restarts, "pm_uptime": uptime, "exec_mode": "fork_mode",
                        "pm_err_log_path": f"/l/{name}-error.log", "watch": False,
                        "pm_pid_path": f"/p/{name}-{pm_id}.pid", "version": "N/A"}}


# ---- prettylist ---------------------------------------------------------------------------------

def test_prettylist_has_the_lines_pm2_scripts_grep():
    text = inspect([proc(0, "echo", restarts=1)])
    assert "status: 'online'" in text
    assert "exec_mode: 'fork_mode'" in text
    assert "restart_time: 1," in text
    assert text.startswith("[\n  {\n    pid: 100,\n    name: 'echo',")
    assert not text.endswith("\n")


@pytest.mark.parametrize(("value", "expected"), [
    ([], "[]"), ({}, "{}"), ([0, 1], "[ 0, 1 ]"), (None, "null"), (1.5, "1.5"), (1e-7, "1e-7"),
    (0.00001, "0.00001"), (1.5e22, "1.5e+22"), ("it's", '"it\'s"'), ({"a-b": 1}, "{ 'a-b': 1 }"),
    ({"b": 1, "1": 2, "0": 3}, "{ '0': 3, '1': 2, b: 1 }"), ("a\tb", "'a\\tb'"),
])
def test_inspect_small_values(value, expected):
    assert inspect(value) == expected


def test_inspect_breaks_lines_at_80_columns():
    assert inspect({"a": "x" * 30, "b": "y" * 40}) == \
        "{\n  a: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',\n  b: 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy'\n}"


def _random_value(rnd, depth=0):
    if depth > 3 or rnd.random() < 0.5:
        text = "".join(rnd.choice(string.ascii_letters + " _-'\"`\n\t\\$é")
                       for _ in range(rnd.choice([0, 1, 3, 8, 20, 90])))
        return rnd.choice([None, True, False, 0, -3, 12345678, 0.5, 1e-7, 123.456, text, "online"])
    if rnd.random() < 0.6:
        keys = ["a", "pm2_env", "PM2-HOME", "0", "12", "x y", "restart_time", "k\n"]
        return {rnd.choice(keys): _random_value(rnd, depth + 1) for _ in range(rnd.choice([0, 2, 7]))}
    return [_random_value(rnd, depth + 1) if rnd.random() < 0.5 else rnd.choice([1, 22, "ab"])
            for _ in range(rnd.choice([0, 3, 7, 10, 30] if depth else [0, 3, 7, 120]))]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_inspect_matches_node_util_inspect():
    rnd = random.Random(7)
    values = [_random_value(rnd) for _ in range(200)] + [[proc(i, f"app{i}") for i in range(3)]]
    script = ("const util=require('util');const a=JSON.parse(require('fs').readFileSync(0,'utf8'));"
              "process.stdout.write(a.map(v=>util.inspect(v,false,null,false)).join('\\u0000'))")
    out = subprocess.run(["node", "-e", script], input=json.dumps(values), capture_output=True,
                         text=True, check=True, timeout=60).stdout.split("\0")
    for value, expected in zip(values, out, strict=True):
        assert inspect(value) == expected, json.dumps(value)[:200]


# ---- argv ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "expected"), [
    (["start", "a.py", "--no-vizion", "--no-pmx", "-x", "--no-automation"], ["start", "a.py"]),
    (["start", "a.py", "--source-map-support", "--disable-source-map-support"], ["start", "a.py"]),
    (["start", "a.py", "-l"], ["start", "a.py", "--log="]),
    (["start", "a.py", "-l", "--name", "x"], ["start", "a.py", "--log=", "--name", "x"]),
    (["start", "a.py", "-l", "my.log"], ["start", "a.py", "-l", "my.log"]),
    (["logs", "--timestamp"], ["logs", "--timestamp=YYYY-MM-DD-HH:mm:ss"]),
    (["logs", "--timestamp", "HH:mm"], ["logs", "--timestamp", "HH:mm"]),
    (["logs", "--highlight", "--raw"], ["logs", "--highlight=", "--raw"]),
    (["log", "app"], ["logs", "app"]),
    (["start", "a.py", "--watch"], ["start", "a.py", "--watch=true"]),
    (["start", "--watch", "a.py"], ["start", "--watch=true", "a.py"]),
    (["start", "a.py", "--watch", "apps"], ["start", "a.py", "--watch", "apps"]),
    (["start", "a.py", "--watch", "--name", "x"], ["start", "a.py", "--watch=true", "--name", "x"]),
    (["restart", "a", "--watch"], ["restart", "a", "--watch"]),
])
def test_argv_rewrite(argv, expected):
    assert argvmod.rewrite(argv).argv == expected


@pytest.mark.parametrize(("given", "watch"), [
    (["true"], True), (["src"], ["src"]), (["src", "lib"], ["src", "lib"]),
])
def test_watch_flag_is_cwd_alone_or_the_paths_given(given, watch):
    flag = next(o for o in options.OPTIONS if o.name == "watch").flag
    assert flag is not None and flag.convert is not None and flag.convert(given) == watch


def test_global_flags_anywhere():
    p = argvmod.rewrite(["stop", "all", "-s", "--no-color"])
    assert (p.argv, p.silent, p.no_color) == (["stop", "all"], True, True)
    assert argvmod.rewrite(["-v"]).version and argvmod.rewrite(["--version"]).version
    assert not argvmod.rewrite(["start", "-v"]).version


# ---- hints --------------------------------------------------------------------------------------

COMMANDS = ["start", "stop", "restart", "delete", "del", "save", "dump", "list", "ls", "status",
            "logs", "describe", "desc", "show", "info", "jlist", "prettylist", "monit", "dash"]


@pytest.mark.parametrize("typo", ["scael", "sacle", "scal", "Scale"])
def test_a_mistyped_scale_never_suggests_save(typo):
    message, hint = hints.unknown_command(typo, [*COMMANDS, "scale"])
    assert message == f'unknown command "{typo}"' and hint == "did you mean: pyvm2 scale"


def test_every_pm2_command_is_there_or_answered():
    """pm2's commands are pyvm2 commands, or answered with what to use instead."""
    import typer

    from pyvm2.cli.dispatch import command_names
    from pyvm2.cli.more import app

    names = set(command_names(typer.main.get_command(app)))
    assert not hints.NOT_YET
    missing = hints.PM2_COMMANDS - names - set(hints.UNSUPPORTED) - set(argvmod.RENAMED)
    assert not missing, sorted(missing)


@pytest.mark.parametrize(("typo", "meant"), [
    ("strat", "start"), ("jlsit", "jlist"), ("lsit", "list"), ("resatrt", "restart"),
    ("delte", "delete"), ("prettyList", "prettylist"), ("dashbord", "dash"),
])
def test_typos_lead_to_the_command(typo, meant):
    assert hints.unknown_command(typo, COMMANDS)[1] == f"did you mean: pyvm2 {meant}"


@pytest.mark.parametrize("word", ["plus", "link", "install", "deploy", "inspect", "trigger", "serve",
                                  "set", "get", "conf", "module:update", "logrotate"])
def test_pm2_only_commands_say_what_to_use(word):
    message, hint = hints.unknown_command(word, COMMANDS)
    assert f'"{word}" is a pm2 command that pyvm2 does not have' in message
    assert hint and "did you mean" not in hint


def test_nothing_close():
    assert hints.unknown_command("zzzzzz", COMMANDS)[1] == "see the commands with: pyvm2 --help"


def test_unknown_option_hint():
    _, hint = hints.unknown_option("--nmae", "start", ["--name", "-n", "--namespace", "--log"])
    assert hint.startswith("did you mean --name?")
    _, hint = hints.unknown_option("--foo", "start", ["--name", "--log"])
    assert hint == "see the options with: pyvm2 start --help"


# ---- list --sort and -m -------------------------------------------------------------------------

PROCS = [proc(0, "b", cpu=5, mem=300, restarts=2, uptime=3000, pid=30),
         proc(1, "a", cpu=1, mem=100, restarts=0, uptime=1000, pid=20),
         proc(2, "c", status="stopped", cpu=9, mem=200, restarts=5, uptime=2000, pid=10)]


@pytest.mark.parametrize(("spec", "order"), [
    ("name", [1, 0, 2]), ("name:desc", [2, 0, 1]), ("id", [0, 1, 2]), ("id:desc", [2, 1, 0]),
    ("pid", [2, 1, 0]), ("cpu:desc", [2, 0, 1]), ("mem", [1, 2, 0]), ("memory:desc", [0, 2, 1]),
    ("restarts", [1, 0, 2]), ("uptime", [1, 2, 0]), ("status", [1, 0, 2]),
])
def test_sort(spec, order):
    assert [p["pm_id"] for p in sort_procs(PROCS, spec)] == order


def test_sort_rejects_unknown_fields():
    with pytest.raises(UsageError) as e:
        sort_procs(PROCS, "colour")
    assert e.value.code == 2 and "name, namespace, id" in (e.value.hint or "")


def test_mini_list_has_pm2s_lines():
    text = render_mini(PROCS[:1], now_ms=63000)
    assert text.splitlines()[:9] == [
        "+--- b", "namespace : default", "version : N/A", "pid : 30", "pm2 id : 0",
        "status : online", "mode : fork", "restarted : 2", "uptime : 60s"]
    assert "memory usage : 300b \n" in text and "watching : no" in text


# ---- saved list and sample files ----------------------------------------------------------------

def test_empty_dump_is_the_daemon_format():
    from pyvm2.daemon.journal import pack, unpack

    assert unpack(empty_dump()) == ([], 0)
    assert json.loads(empty_dump()) == json.loads(pack([], 0))


@pytest.mark.parametrize("text", [SAMPLE_FULL, SAMPLE_SIMPLE])
def test_sample_ecosystem_files_load(tmp_path, text):
    from pyvm2 import ecosystem

    (tmp_path / "app.py").write_text("print('hi')\n")
    path = tmp_path / "ecosystem.config.json5"
    path.write_text(text)
    loaded = ecosystem.load(str(path))
    assert [a.name for a in loaded.apps] == ["app"] and not loaded.warnings
    assert loaded.apps[0].script == str(tmp_path / "app.py")


# ---- monit keeps stderr in view -----------------------------------------------------------------

def test_monit_keeps_error_lines_visible_under_a_chatty_stdout(tmp_path):
    import os

    from pyvm2.cli.monit import _log_text, _LogCache

    err, out = tmp_path / "e.log", tmp_path / "o.log"
    err.write_text("Traceback (most recent call last):\nValueError: boom\n")
    out.write_text("".join(f"line {i}\n" for i in range(50)))
    os.utime(err, (1, 1))
    proc = {"pm2_env": {"pm_out_log_path": str(out), "pm_err_log_path": str(err)}}
    shown = _LogCache().lines(proc, 6)
    assert len(shown) == 6
    assert shown[:2] == (("Traceback (most recent call last):", True), ("ValueError: boom", True))
    assert [t for t, _e in shown[2:]] == ["line 46", "line 47", "line 48", "line 49"]
    assert _log_text("boom", True).plain.startswith("! ")
    assert _log_text("fine", False).plain.startswith("▍ ")
