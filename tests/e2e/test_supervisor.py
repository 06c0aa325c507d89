"""supervisord.conf files run by the real daemon: the processes supervisor would run (argv,
directory, environment, user), its restart and stop rules, namespaces, convert, tail and signal."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Pyvm2, fixture, needs_php, proc_environ, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def running(pv: Pyvm2) -> dict[str, list[dict]]:
    """Every process's argv, cwd and environment as the OS sees them, by app name."""
    out: dict[str, list[dict]] = {}
    for p in sorted(pv.jlist(), key=lambda p: (p["name"], p["pm2_env"]["instance"])):
        pid = p["pid"]
        env = proc_environ(pid) or {}
        out.setdefault(p["name"], []).append({
            "argv": cmdline(pid), "cwd": os.readlink(f"/proc/{pid}/cwd"),
            "env": {k: v for k, v in env.items() if k in ("APP_ENV", "QUEUE_CONNECTION",
                                                          "NODE_APP_INSTANCE", "N")},
            "namespace": p["pm2_env"]["namespace"]})
    return out


@needs_php
def test_the_laravel_example_runs_as_supervisor_would(pv: Pyvm2) -> None:
    conf = pv.workdir / "supervisord.conf"
    shutil.copy(EXAMPLES / "supervisord.conf", conf)
    shutil.copy(EXAMPLES / "artisan", pv.workdir / "artisan")
    pv.ok("start", str(conf), cwd="/")
    workers = pv.wait_status("queue-worker", "online")
    assert len(workers) == 4 and pv.status("scheduler") == ["online"]
    seen = running(pv)
    php = shutil.which("php")
    for i, w in enumerate(seen["queue-worker"]):
        assert w["argv"] == [php, str(pv.workdir / "artisan"), "queue:work", "--sleep=3",
                             "--tries=3", "--max-time=3600"]
        assert w["cwd"] == str(pv.workdir) and w["namespace"] == "laravel"
        assert w["env"] == {"APP_ENV": "local", "QUEUE_CONNECTION": "database",
                            "NODE_APP_INSTANCE": str(i)}
    pv.wait_log("queue-worker", "processed job #1", pm_id=workers[0]["pm_id"])

    # the group is a target; stopsignal defaults to TERM, which the worker handles gracefully
    before = {p["pm_id"]: p["pid"] for p in pv.jlist()}
    pv.ok("restart", "laravel")
    after = {p["pm_id"]: p["pid"] for p in pv.wait_status("queue-worker", "online")}
    assert all(after[i] != before[i] for i in after)
    pv.wait_log("queue-worker", "stopped after", pm_id=workers[0]["pm_id"])
    pv.ok("stop", "laravel")
    assert set(pv.status("queue-worker") + pv.status("scheduler")) == {"stopped"}


def test_numprocs_with_per_process_commands_are_separate_apps(pv: Pyvm2) -> None:
    conf = pv.write_eco(f"""
[program:port]
command={sys.executable} {fixture("show_env.py")} --port=80%(process_num)02d
process_name=%(program_name)s_%(process_num)02d
numprocs=2
numprocs_start=1
environment=N="%(process_num)d"
""", name="ports.conf")
    pv.ok("start", str(conf))
    pv.wait_status("port_01", "online")
    pv.wait_status("port_02", "online")
    seen = running(pv)
    assert seen["port_01"][0]["argv"][-1] == "--port=8001"
    assert seen["port_02"][0]["env"]["N"] == "2" and seen["port_02"][0]["namespace"] == "port"
    pv.ok("stop", "port")
    assert pv.status("port_01") == pv.status("port_02") == ["stopped"]


def test_autorestart_unexpected_and_exitcodes(pv: Pyvm2) -> None:
    sh = shutil.which("sh")
    conf = pv.write_eco(f"""
[program:clean]
command={sh} -c 'echo run; sleep 1.5; exit 0'

[program:crash]
command={sh} -c 'echo run; sleep 1.5; exit 3'

[program:expected]
command={sh} -c 'echo run; sleep 1.5; exit 3'
exitcodes=0,3

[program:always]
command={sh} -c 'echo run; sleep 1.5; exit 0'
autorestart=true

[program:killed]
command={sh} -c 'echo run; exec sleep 60'
""", name="exits.conf")
    pv.ok("start", str(conf))
    # exit 0 is expected: stays stopped, as supervisor's EXITED
    pv.wait_status("clean", "stopped", timeout=30)
    pv.wait_status("expected", "stopped", timeout=30)
    # an exit code not in exitcodes, or autorestart=true: restarted
    wait_for(lambda: pv.proc("crash")["pm2_env"]["restart_time"], lambda n: n >= 1, timeout=30,
             what="crash to be restarted")
    wait_for(lambda: pv.proc("always")["pm2_env"]["restart_time"], lambda n: n >= 1, timeout=30,
             what="always to be restarted")
    assert pv.proc("clean")["pm2_env"]["restart_time"] == 0
    # a death by a signal is unexpected too (pm2's stop_exit_codes would count it as 0)
    first = pv.wait_status("killed", "online")[0]["pid"]
    os.kill(first, 9)
    wait_for(lambda: pv.proc("killed"), lambda p: p["pm2_env"]["status"] == "online"
             and p["pid"] not in (first, None, 0), timeout=30, what="killed to be restarted")


def test_stopsignal_and_signal_command(pv: Pyvm2) -> None:
    conf = pv.write_eco(f"""
[program:sig]
command={sys.executable} -u {fixture("report_signal.py")}
stopsignal=QUIT
stopwaitsecs=5
""", name="sig.conf")
    pv.ok("start", str(conf))
    pv.wait_log("sig", "ready")
    r = pv.ok("signal", "USR1", "sig")
    assert "sig (0): signalled" in r.out
    pv.wait_log("sig", "got SIGUSR1")
    assert pv.ok("pid", "sig").out.strip() == str(pv.proc("sig")["pid"])
    pv.ok("stop", "sig")
    pv.wait_log("sig", "got SIGQUIT")
    r = pv.run("signal", "HUP", "sig")
    assert r.code != 0 and "not running" in r.err


def test_tail_counts_bytes_like_supervisorctl(pv: Pyvm2) -> None:
    conf = pv.write_eco(f"""
[program:talk]
command={shutil.which("sh")} -c 'echo 0123456789; echo oops >&2; exec sleep 60'
""", name="talk.conf")
    pv.ok("start", str(conf))
    pv.wait_log("talk", "0123456789")
    pv.wait_log("talk", "oops", stream="err")
    assert pv.ok("tail", "-5", "talk").out == "6789\n"
    assert pv.ok("tail", "talk").out == "0123456789\n"
    assert pv.ok("tail", "talk", "stderr").out == "oops\n"
    assert pv.ok("tail", "-3", "talk:talk", "stderr").out == "ps\n"


def test_convert_round_trip_runs_the_same_processes(pv: Pyvm2) -> None:
    conf = pv.write_eco(f"""
[supervisord]
environment=APP_ENV="prod"

[group:g]
programs=a,b

[program:a]
command={sys.executable} {fixture("show_env.py")} --x='a b'
directory=%(here)s
numprocs=2
process_name=%(program_name)s_%(process_num)d

[program:b]
command={sys.executable} {fixture("show_env.py")} --port=%(process_num)d
numprocs=2
process_name=%(program_name)s_%(process_num)d
environment=N="%(process_num)d"
""", name="round.conf")
    out = pv.ok("convert", str(conf)).out
    converted = pv.write_eco(out, name="converted.json")
    assert json.loads(out)["apps"][0]["autorestart"] == "unexpected"
    pv.ok("start", str(conf))
    for name in ("a", "b_0", "b_1"):
        pv.wait_status(name, "online")
    first = running(pv)
    pv.ok("delete", "all")
    pv.ok("start", str(converted))
    for name in ("a", "b_0", "b_1"):
        pv.wait_status(name, "online")
    assert running(pv) == first


@pytest.fixture
def worker_user():
    """A throwaway user with a supplementary group (root only), removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to run an app as another user")
    name = f"pv2w{os.getpid() % 100000}"
    extra = f"{name}x"
    subprocess.run(["groupadd", extra], capture_output=True)
    r = subprocess.run(["useradd", "--no-create-home", "--home-dir", f"/home/{name}", "--shell",
                        "/bin/sh", "-G", extra, name], capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["groupdel", extra], capture_output=True)
        pytest.skip(f"cannot create a user: {r.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", extra], capture_output=True)


def test_a_program_runs_as_its_user(pv: Pyvm2, worker_user: str) -> None:
    pw = pwd.getpwnam(worker_user)
    extra = grp.getgrnam(f"{worker_user}x").gr_gid
    conf = pv.write_eco(f"""
[program:asuser]
command={shutil.which("sh")} -c 'echo I am $(id -un) in $HOME; exec sleep 60'
user={worker_user}
umask=027
directory=/tmp
environment=USER_SET_BY_APP="yes"
""", name="user.conf")
    pv.ok("start", str(conf))
    p = pv.wait_status("asuser", "online")[0]
    status = Path(f"/proc/{p['pid']}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split() == [str(pw.pw_uid)] * 4
    assert fields["Gid"].split() == [str(pw.pw_gid)] * 4
    assert sorted(int(g) for g in fields["Groups"].split()) == sorted({pw.pw_gid, extra})
    assert fields["Umask"].strip() == "0027"
    env = proc_environ(p["pid"]) or {}
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (pw.pw_dir, worker_user, worker_user)
    assert env["USER_SET_BY_APP"] == "yes"
    assert p["pm2_env"]["username"] == worker_user
    log = pv.wait_log("asuser", f"I am {worker_user} in {pw.pw_dir}")
    assert log
    st = pv.log_path("asuser").stat()
    assert (st.st_uid, st.st_gid) == (0, 0), "the log stays the daemon's"


def test_an_unknown_user_is_refused_before_anything_starts(pv: Pyvm2) -> None:
    conf = pv.write_eco(f"""
[program:ok]
command={shutil.which("sh")} -c 'exec sleep 60'

[program:bad]
command={shutil.which("sh")} -c 'exec sleep 60'
user=no-such-user-here
""", name="bad.conf")
    r = pv.run("start", str(conf))
    assert r.code == 2 and r.first_err_line.endswith(
        'bad.conf:7:6: [program:bad] user: no such user "no-such-user-here" on this machine')
    assert pv.jlist() == []


def test_priority_orders_start_and_stop(pv: Pyvm2) -> None:
    order = pv.workdir / "order"
    sh = shutil.which("sh")
    body = "echo {0} >> {1}; trap \"echo stop {0} >> {1}; exit 0\" TERM; while :; do sleep 0.1; done"
    conf = pv.write_eco(f"""
[program:late]
command={sh} -c '{body.format("late", order)}'
priority=20

[program:early]
command={sh} -c '{body.format("early", order)}'
priority=10
""", name="prio.conf")
    r = pv.ok("start", str(conf))
    assert r.out.index("[early]") < r.out.index("[late]")
    wait_for(lambda: order.read_text() if order.exists() else "",
             lambda t: "early" in t and "late" in t, what="both to start")
    pv.ok("stop", "all")
    stops = [ln for ln in order.read_text().splitlines() if ln.startswith("stop")]
    assert stops == ["stop late", "stop early"]


def test_starting_the_file_again_is_reread_and_update(pv: Pyvm2) -> None:
    sh = shutil.which("sh")
    text = f"""
[program:same]
command={sh} -c 'exec sleep 60'

[program:changed]
command={sh} -c 'exec sleep {{n}}'
"""
    conf = pv.write_eco(text.format(n=60), name="update.conf")
    pv.ok("start", str(conf))
    before = {p["name"]: p["pid"] for p in pv.wait_status("same", "online")
              + pv.wait_status("changed", "online")}
    pv.ok("start", str(conf))
    assert {p["name"]: p["pid"] for p in pv.jlist()} == before
    conf.write_text(text.format(n=61))
    pv.ok("start", str(conf))
    after = {p["name"]: p["pid"] for p in pv.wait_status("changed", "online")
             + pv.wait_status("same", "online")}
    assert after["same"] == before["same"] and after["changed"] != before["changed"]


def test_autostart_false_registers_the_program_stopped(pv: Pyvm2) -> None:
    conf = pv.write_eco(f"""
[program:later]
command={shutil.which("sh")} -c 'exec sleep 60'
autostart=false
""", name="later.conf")
    pv.ok("start", str(conf))
    assert pv.status("later") == ["stopped"]
    pv.ok("start", "later")
    pv.wait_status("later", "online")
