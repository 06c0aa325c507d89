"""What survives a reboot: save writes the apps and whether each should run (never an empty list by
accident, the previous dump kept), resurrect restores exactly that however often it runs,
import-pm2 brings a pm2 user's list over, and the systemd unit from `startup` works when its
ExecStart and ExecStop lines are run by hand."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
from conftest import Pyvm2, fixture, processes_of_home, wait_for
from helpers_more import app_processes_by_token, daemons_of


def start_saved_set(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("api", "show_env.py"),
                        pv.app("worker", "ticker.py", env={"TICK_S": "0.5"}),
                        pv.app("report", "ticker.py", env={"TICK_S": "1"})])
    pv.ok("start", str(eco))
    pv.ok("stop", "report")


def states(pv: Pyvm2) -> dict[str, str]:
    return {p["name"]: p["pm2_env"]["status"] for p in pv.jlist()}


def dump_names(path) -> list[str]:
    doc = json.loads(path.read_text())
    text = json.dumps(doc)
    return sorted(n for n in ("api", "worker", "report") if f'"{n}"' in text)


SAVED = {"api": "online", "worker": "online", "report": "stopped"}


@pytest.mark.timeout(90)
def test_save_kill_resurrect_twice_restores_the_saved_state_once(pv: Pyvm2) -> None:
    start_saved_set(pv)
    r = pv.ok("save")
    assert "3" in r.out + r.err, r
    assert (pv.home / "dump.json").exists()
    pv.ok("kill")
    assert not processes_of_home(pv.home), "kill should leave nothing running"

    pv.ok("resurrect")
    assert states(pv) == SAVED
    first = {p["name"]: p["pid"] for p in pv.jlist()}

    again = pv.ok("resurrect")
    assert states(pv) == SAVED, again
    assert {p["name"]: p["pid"] for p in pv.jlist()} == first
    assert len(pv.jlist()) == 3
    # one process per running app, nothing for the stopped one
    by_token = app_processes_by_token(pv)
    assert sorted(pid for pids in by_token.values() for pid in pids) == \
        sorted(first[n] for n in ("api", "worker")), by_token


@pytest.mark.timeout(60)
def test_save_with_no_app_refuses_without_force_and_keeps_the_previous_dump(pv: Pyvm2) -> None:
    start_saved_set(pv)
    pv.ok("save")
    dump = pv.home / "dump.json"
    saved = dump.read_bytes()
    pv.ok("delete", "all")

    r = pv.run("save")
    assert r.code != 0, r
    assert "Traceback" not in r.out + r.err
    assert "--force" in r.err, r
    assert dump.read_bytes() == saved, "a refused save must leave the dump as it was"

    pv.ok("save", "--force")
    assert dump_names(dump) == [], dump.read_text()
    backup = pv.home / "dump.json.bak"
    assert backup.exists(), sorted(os.listdir(pv.home))
    assert backup.read_bytes() == saved, "the previous dump is kept as dump.json.bak"

    # resurrect of the empty list changes nothing; the backup still has the old apps
    pv.ok("resurrect")
    assert pv.jlist() == []
    assert dump_names(backup) == ["api", "report", "worker"]


@pytest.mark.timeout(60)
def test_import_pm2_restores_a_hand_written_pm2_dump(pv: Pyvm2) -> None:
    cwd = str(pv.workdir)
    dump = pv.workdir / "dump.pm2"
    dump.write_text(json.dumps([
        {"name": "api", "pm_exec_path": fixture("show_env.py"), "pm_cwd": cwd,
         "args": ["--port", "8080"], "exec_interpreter": "python3", "status": "online",
         "exec_mode": "fork_mode", "instances": 1, "pm_id": 0, "restart_time": 7,
         "env": {"API_KEY": "s3cret", "SHOW_VARS": "API_KEY,PM2_HOME", "PM2_HOME": "/root/.pm2",
                 "pm_id": 0, "api": {}}},
        {"name": "nightly", "pm_exec_path": fixture("ticker.py"), "pm_cwd": cwd, "args": [],
         "exec_interpreter": "python3", "status": "stopped", "exec_mode": "fork_mode",
         "pm_id": 1, "env": {}},
    ]))
    r = pv.ok("import-pm2", str(dump))
    assert states(pv) == {"api": "online", "nightly": "stopped"}, r

    out = json.loads(pv.wait_log("api", "argv").splitlines()[0])
    assert out["argv"] == ["--port", "8080"], out
    assert out["cwd"] == cwd, out
    assert out["env"]["API_KEY"] == "s3cret", out
    assert out["env"]["PM2_HOME"] is None, "pm2's own variables are not the app's"

    # importing again does not duplicate anything
    pv.ok("import-pm2", str(dump))
    assert sorted(p["name"] for p in pv.jlist()) == ["api", "nightly"]


def unit_text(pv: Pyvm2) -> str:
    return pv.ok("startup", "--print").out


def unit_lines(text: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def test_startup_print_shows_a_unit_that_resurrects_and_survives(pv: Pyvm2) -> None:
    text = unit_text(pv)
    for needle in ("Restart=always", f"PYVM2_HOME={pv.home}", "HOME=", "KillMode=process"):
        assert needle in text, f"{needle!r} missing from:\n{text}"
    [start] = unit_lines(text, "ExecStart")
    assert "resurrect" in start.split(), text
    assert unit_lines(text, "ExecStop"), text
    assert any(v.startswith("HOME=") for v in unit_lines(text, "Environment")), text


def test_startup_writes_and_unstartup_removes_a_user_unit(pv: Pyvm2) -> None:
    config = pv.workdir / "config"
    env = dict(pv.env, XDG_CONFIG_HOME=str(config))
    r = pv.run("startup", env=env)
    assert r.code == 0 and "Traceback" not in r.out + r.err, r
    unit = config / "systemd" / "user" / "pyvm2.service"
    assert unit.exists(), r
    assert unit.read_text() == pv.run("startup", "--print", env=env).out
    assert "systemctl --user enable" in r.out, r

    r = pv.run("unstartup", env=env)
    assert r.code == 0 and not unit.exists(), r


def test_startup_in_pm2s_form_writes_a_system_unit_for_the_user(pv: Pyvm2) -> None:
    """`sudo pm2 startup systemd -u www --hp /home/www`: a system unit that runs the daemon as
    that user with that home. Printed here: a test does not write to /etc."""
    if os.geteuid() != 0:
        r = pv.run("startup", "systemd", "-u", "nobody", "--hp", "/srv/nb", "--print")
        assert r.code != 0 and "sudo env PATH=$PATH pyvm2 startup -u nobody --hp /srv/nb" in r.err
        return
    text = pv.ok("startup", "systemd", "-u", "nobody", "--hp", "/srv/nb", "--print").out
    assert "User=nobody" in text.splitlines(), text
    assert "HOME=/srv/nb" in unit_lines(text, "Environment"), text
    assert "PYVM2_HOME=/srv/nb/.pyvm2" in unit_lines(text, "Environment"), text
    assert unit_lines(text, "PIDFile") == ["/srv/nb/.pyvm2/pyvm2.pid"], text
    assert "WantedBy=multi-user.target" in text, text


@pytest.mark.parametrize(("args", "says"), [
    (("launchd",), "pyvm2 writes systemd units only, not launchd scripts"),
    (("systemd", "-u", "no-such-user-here"), "no user named 'no-such-user-here'"),
])
def test_startup_refuses_what_it_cannot_write_in_one_line(pv: Pyvm2, args: tuple[str, ...],
                                                         says: str) -> None:
    r = pv.run("startup", *args, "--print")
    assert r.code == 1 and r.err.startswith(f"[PYVM2][ERROR] {says}"), r
    assert "Traceback" not in r.err


def run_unit_line(line: str, environment: list[str], pv: Pyvm2) -> subprocess.CompletedProcess:
    """Run one Exec line the way systemd would: only the unit's environment, no shell."""
    env = {"LANG": "C.UTF-8"}
    for item in environment:
        k, _, v = item.partition("=")
        env[k] = v
    env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    return subprocess.run(shlex.split(line.lstrip("-@+!")), env=env, capture_output=True,
                          text=True, timeout=60, cwd="/")


@pytest.mark.timeout(90)
def test_the_units_execstart_brings_back_the_saved_apps_and_execstop_ends_everything(
        pv: Pyvm2) -> None:
    start_saved_set(pv)
    pv.ok("save")
    pv.ok("kill")
    assert not processes_of_home(pv.home)

    text = unit_text(pv)
    environment = unit_lines(text, "Environment")
    [start] = unit_lines(text, "ExecStart")
    [stop] = unit_lines(text, "ExecStop")
    assert shlex.split(start)[0] in (sys.executable, "pyvm2") or "pyvm2" in start, start

    r = run_unit_line(start, environment, pv)
    assert r.returncode == 0, f"{start}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stdout + r.stderr
    assert len(daemons_of(pv)) == 1, "ExecStart should leave the daemon running"
    pid_file = unit_lines(text, "PIDFile")
    if pid_file:
        assert int(open(pid_file[0]).read()) == daemons_of(pv)[0]
    assert states(pv) == SAVED

    r = run_unit_line(stop, environment, pv)
    assert r.returncode == 0, f"{stop}\n{r.stdout}\n{r.stderr}"
    left = wait_for(lambda: processes_of_home(pv.home), lambda ps: not ps, timeout=10,
                    what="ExecStop to end the daemon and every app")
    assert not left


def systemd_environment(values: list[str]) -> dict[str, str]:
    """Environment= lines read as systemd does: whitespace-separated assignments, quotes group."""
    env: dict[str, str] = {}
    for value in values:
        for item in shlex.split(value):
            k, sep, v = item.partition("=")
            if sep:
                env[k] = v
    return env


def test_the_unit_keeps_paths_with_spaces_whole(pv: Pyvm2) -> None:
    home = pv.workdir / "my home"
    pyvm2_home = pv.workdir / "pyvm2 home"
    env = dict(pv.env, HOME=str(home), PYVM2_HOME=str(pyvm2_home))
    r = pv.run("startup", "--print", env=env)
    assert r.code == 0, r
    parsed = systemd_environment(unit_lines(r.out, "Environment"))
    assert parsed.get("HOME") == str(home), r.out
    assert parsed.get("PYVM2_HOME") == str(pyvm2_home), r.out
