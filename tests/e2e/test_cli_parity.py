"""The pm2 commands and flags a pm2 user types, against a real daemon: version, prettylist, id,
env, cleardump, init, report, completion, list --sort/-m, the flags pm2 accepts, start of several
scripts or from standard input, targets by script path, the logs forms, and errors that lead
somewhere."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

from conftest import PYTHON, Pyvm2, Result, fixture, wait_for


def copy_ticker(pv: Pyvm2, *names: str) -> list[str]:
    for n in names:
        shutil.copy(fixture("ticker.py"), pv.workdir / n)
    return list(names)


def piped(pv: Pyvm2, text: str, *args: str) -> Result:
    proc = subprocess.run(pv.cmd(*args), input=text.encode(), capture_output=True, timeout=60,
                          cwd=str(pv.workdir), env=pv.env)
    return Result(list(args), proc.returncode, proc.stdout.decode(errors="replace"),
                  proc.stderr.decode(errors="replace"))


def test_version_flags_and_help(pv: Pyvm2) -> None:
    from pyvm2 import __version__

    for flag in ("-v", "-V", "--version"):
        assert pv.ok(flag).out.strip() == __version__
    assert "--version" in pv.ok("--help").out
    bare = pv.run()
    assert bare.code == 1 and "Commands" in bare.out, bare  # as pm2: help, but not a success


def test_unknown_commands_and_flags_lead_somewhere(pv: Pyvm2) -> None:
    cases = {
        ("scael",): ('[PYVM2][ERROR] unknown command "scael"', "did you mean: pyvm2 scale"),
        ("scale", "app", "two"): ("[PYVM2][ERROR] scale: 'two' is not a number of instances",
                                  "+2 (two more)"),
        ("scale", "app", "0"): ("at least 1 instance", "pyvm2 delete NAME"),
        ("jlsit",): ('[PYVM2][ERROR] unknown command "jlsit"', "pyvm2 jlist"),
        ("plus",): ('"plus" is a pm2 command that pyvm2 does not have', "pyvm2 web"),
        ("install", "pm2-logrotate"): ('"install" is a pm2 command', "log_max_size"),
        ("deploy", "production", "setup"): ('"deploy" is a pm2 command', "pyvm2 export"),
        ("set", "pm2-logrotate:max_size", "1K"): ('"set" is a pm2 command', "config.json"),
        ("start", "x.py", "--nmae", "y"): ('unknown option --nmae for "pyvm2 start"', "--name"),
        ("describe",): ("[PYVM2][ERROR] missing argument", "usage: pyvm2 describe"),
    }
    for args, (first, hint) in cases.items():
        r = pv.run(*args)
        assert r.code == 2, r
        lines = r.err.splitlines()
        assert first in lines[0] and lines[0].startswith("[PYVM2][ERROR]"), r
        assert hint in r.err and "Traceback" not in r.err, r
        assert "save" not in r.err, r
    assert pv.daemon_pid() is None  # none of them started the daemon


def test_prettylist_id_and_env(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("tick", "ticker.py", env={"TICK_S": "0.5", "GREETING": "hi there"})])
    pv.ok("start", str(eco))
    pv.wait_status("tick", "online")
    text = pv.ok("prettylist").out
    assert text.startswith("[\n  {\n")
    for line in ("status: 'online'", "exec_mode: 'fork_mode'", "restart_time: 0", "name: 'tick'"):
        assert line in text, text
    pv.ok("restart", "tick")
    pv.wait_status("tick", "online")
    assert "restart_time: 1," in pv.ok("prettylist").out
    assert pv.ok("id", "tick").out == "[ 0 ]\n"
    assert pv.ok("id", "nothing").out == "[]\n"
    env = pv.ok("env", "0").out
    assert "GREETING: hi there" in env.splitlines() and "TICK_S: 0.5" in env.splitlines(), env
    r = pv.run("env", "7")
    assert r.code == 1 and r.err.startswith("[PYVM2][ERROR] process 7 not found"), r
    # jlist carries the environment as pm2's does: flattened, and as pm2_env.env
    [entry] = json.loads(pv.ok("jlist").out)
    assert entry["pm2_env"]["GREETING"] == "hi there" and entry["pm2_env"]["status"] == "online"
    assert entry["pm2_env"]["env"]["TICK_S"] == "0.5", entry["pm2_env"]


def test_list_sort_and_mini(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("bbb", "ticker.py"), pv.app("aaa", "ticker.py")])
    pv.ok("start", str(eco))
    pv.wait_status("bbb", "online")
    pv.wait_status("aaa", "online")

    def order(*args: str) -> list[str]:
        out = pv.ok("list", *args).out
        return re.findall(r"^│ \d+\s+│ (\w+)", out, re.M)

    assert order() == ["aaa", "bbb"]
    assert order("--sort", "name:desc") == ["bbb", "aaa"]
    assert order("--sort", "id") == ["bbb", "aaa"]
    mini = pv.ok("ls", "-m").out
    assert mini.index("+--- aaa") < mini.index("+--- bbb")
    assert "status : online" in mini and "pm2 id : 1" in mini
    r = pv.run("list", "--sort", "colour")
    assert r.code == 2 and "cannot sort by" in r.err.splitlines()[0], r


def test_cleardump_empties_the_saved_list(pv: Pyvm2) -> None:
    pv.ok("start", fixture("ticker.py"), "--name", "kept")
    pv.wait_status("kept", "online")
    pv.ok("save")
    r = pv.ok("cleardump")
    assert "Successfully created" in r.out and (pv.home / "dump.json.bak").exists()
    pv.ok("kill")
    pv.ok("resurrect")
    assert pv.jlist() == []


def test_init_writes_a_sample_once(pv: Pyvm2) -> None:
    (pv.workdir / "app.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    r = pv.ok("init")
    path = pv.workdir / "ecosystem.config.json5"
    assert str(path) in r.out and path.read_text().startswith("// pyvm2 ecosystem file")
    before = path.read_text()
    r = pv.run("ecosystem", "simple")
    assert r.code == 1 and "already exists" in r.err.splitlines()[0] and path.read_text() == before
    pv.ok("start")  # finds ecosystem.config.json5, as pm2 finds ecosystem.config.js
    pv.wait_status("app", "online")
    pv.ok("delete", "all")
    path.unlink()
    pv.ok("ecosystem", "simple")
    assert "apps" in path.read_text()


def test_report(pv: Pyvm2) -> None:
    r = pv.ok("report")
    assert "daemon          : not running" in r.out, r
    assert pv.daemon_pid() is None  # report does not start the daemon
    pv.ok("start", fixture("ticker.py"), "--name", "rep")
    r = pv.ok("report")
    for needle in ("pyvm2           :", "python          :", "open files      :",
                   "inotify watches :", "subreaper       :", "daemon          : running, pid",
                   "0|rep: online", "App [rep:0] online"):
        assert needle in r.out, r


def test_completion(pv: Pyvm2) -> None:
    assert "complete -o default -F _pyvm2_completion pyvm2" in pv.ok("completion", "bash").out
    assert "compdef" in pv.ok("completion", "zsh").out
    assert "complete --command pyvm2" in pv.ok("completion", "fish").out
    assert pv.run("completion", "tcsh").code == 2

    def complete(line: str) -> list[str]:
        env = dict(pv.env, COMP_WORDS=line, COMP_CWORD=str(len(line.split(" ")) - 1),
                   _PYVM2_COMPLETE="complete_bash")
        proc = subprocess.run([PYTHON, "-m", "pyvm2"], capture_output=True, env=env, timeout=60,
                              cwd=str(pv.workdir))
        return proc.stdout.decode().split()

    assert "stop" in complete("pyvm2 sto")
    assert "prettylist" in complete("pyvm2 pre")
    pv.ok("start", fixture("ticker.py"), "--name", "web-api")
    assert complete("pyvm2 restart web") == ["web-api"]
    assert {"all", "web-api", "0"} <= set(complete("pyvm2 logs "))
    zsh = subprocess.run([PYTHON, "-m", "pyvm2"], capture_output=True, timeout=60, cwd=str(pv.workdir),
                         env=dict(pv.env, _TYPER_COMPLETE_ARGS="pyvm2 stop w",
                                  _PYVM2_COMPLETE="complete_zsh"))
    assert '"web-api"' in zsh.stdout.decode(), zsh


def test_start_forms_and_flags(pv: Pyvm2) -> None:
    a, b, c = copy_ticker(pv, "a.py", "b.py", "c.py")
    r = pv.ok("start", a, b, "--no-vizion", "--no-pmx", "--no-automation", "-x",
              "--source-map-support", "--disable-source-map-support", "--no-treekill")
    assert "│ a " in r.out and "│ b " in r.out
    pv.wait_status("a", "online")
    pv.wait_status("b", "online")
    assert pv.run("start", a, b, "-s").out == ""  # silent
    pv.ok("stop", "a.py")  # by the script's path
    assert pv.status("a") == ["stopped"] and pv.status("b") == ["online"]
    pv.ok("start", c, "-l", "--name", "cee")
    log = pv.proc("cee")["pm2_env"]["pm_log_path"]
    assert log and log.endswith("cee.log")
    wait_for(lambda: open(log).read(), lambda s: "tick" in s and "tock" in s, what="the combined log")
    stdin_eco = json.dumps({"apps": [{"name": "piped", "script": "c.py", "env": {"TICK_S": "1"}}]})
    r = piped(pv, stdin_eco, "start", "-")
    assert r.code == 0, r
    pv.wait_status("piped", "online")
    assert pv.proc("piped")["pm2_env"]["pm_exec_path"] == str(pv.workdir / "c.py")
    assert piped(pv, stdin_eco, "delete", "-").code == 0
    assert pv.procs("piped") == []
    pv.ok("start", fixture("show_env.py"), "--name", "filtered", "--filter-env", "--log-type", "json")
    line = json.loads(pv.wait_log("filtered", "message").splitlines()[0])
    assert line["app_name"] == "filtered" and line["type"] == "out"
    r = pv.ok("start", "-f", b)  # pm2's force: another copy, which joins the app b
    assert len(pv.procs("b")) == 2, r
    pv.wait_status("b", "online")
    r = pv.run("start", a, "8000")
    assert r.code == 1 and "pyvm2 start a.py -- 8000" in r.err, r


def test_logs_forms(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("tick", "ticker.py", env={"TICK_S": "0.1"}),
                        pv.app("other", "ticker.py", env={"TICK_S": "0.1"}),
                        pv.app("third", "ticker.py", env={"TICK_S": "0.1"})])
    pv.ok("start", str(eco))
    for name in ("tick", "other", "third"):
        pv.wait_log(name, "tock 3", stream="err")
    r = pv.ok("logs", "tick", "other", "--nostream", "--lines", "2")
    assert "0|tick" in r.out and "1|other" in r.out and "2|third" not in r.out, r
    r = pv.ok("logs", "/^t/", "--nostream", "--lines", "2")
    assert "0|tick" in r.out and "2|third" in r.out and "1|other" not in r.out, r
    assert pv.run("logs", "/^zz/", "--nostream").code == 1
    r = pv.ok("logs", "tick", "--nostream", "--lines", "2", "--json")
    events = [json.loads(ln) for ln in r.out.splitlines()]
    assert events and all(e["app_name"] == "tick" and e["process_id"] == 0 for e in events), r
    assert {e["type"] for e in events} == {"out", "err"}
    r = pv.ok("logs", "other", "--nostream", "--lines", "1", "--format")
    assert re.search(r"^app=other id=1 type=out message=tick \d+$", r.out, re.M), r
    assert re.search(r"^app=other id=1 type=error message=tock \d+$", r.out, re.M), r
    r = pv.run("logs", "tick", "--nostream", "--lines", "1", "--highlight", "tick",
               env=dict(pv.env, FORCE_COLOR="1", NO_COLOR=""))
    assert "\x1b[100mtick\x1b[49m" in r.out, r

    stream = pv.popen("logs", "tick", "--lines", "0", "--timestamp", "HH:mm:ss")
    seen = _read_until(stream, re.compile(r"^\d\d:\d\d:\d\d 0\|tick\s*\| tick \d+$"))
    assert seen, "no timestamped line"
    stream = pv.popen("logs", "--json", "--lines", "0")
    time.sleep(0.5)
    pv.ok("restart", "other")
    assert _read_until(stream, re.compile(r'"type": "process_event", "status": "online", '
                                          r'"app_name": "other"'))
    pv.ok("stop", "/^t/")  # pm2's regex targets work for the actions too
    assert (pv.status("tick"), pv.status("third"), pv.status("other")) == \
        (["stopped"], ["stopped"], ["online"])
    assert pv.run("restart", "/^zz/").code == 1


def _read_until(proc: subprocess.Popen, pattern: re.Pattern, timeout: float = 20.0) -> str | None:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                continue
            chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                return None
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if pattern.search(line):
                    return line
        return None
    finally:
        sel.close()
        proc.terminate()
