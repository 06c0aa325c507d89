"""Load: 500 apps from one file, 20 CLIs at once, and `list` staying quick while an app floods
its output at full speed."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections import Counter

import psutil
import pytest
from conftest import Pyvm2, alive, processes_of_home, wait_for
from helpers_more import app_processes_by_token, connect, read_reply

#: Stopping 500 idle sleepers is a few shared /proc scans, signals and reaps (a few seconds on a
#: busy 2-core machine): a deadline, not a timing assertion; past it the stops no longer share
#: their scans.
STOP_ALL_S = 30.0


@pytest.mark.timeout(120)
def test_500_apps_from_one_file_start_list_online_and_stop(pv: Pyvm2) -> None:
    apps = [{"name": f"s{i:03d}", "script": "sleep", "args": "3600"} for i in range(500)]
    eco = pv.write_eco(apps)
    t0 = time.monotonic()
    r = pv.ok("start", str(eco), timeout=180)
    started = time.monotonic() - t0
    assert r.out.count(" online ") == 500, r.out[-2000:]

    procs = pv.jlist()
    assert len(procs) == 500
    assert Counter(p["pm2_env"]["status"] for p in procs) == {"online": 500}
    assert sorted(p["name"] for p in procs) == [a["name"] for a in apps]
    assert len({p["pid"] for p in procs}) == 500
    by_token = app_processes_by_token(pv)
    assert len(by_token) == 500 and all(len(v) == 1 for v in by_token.values())

    t0 = time.monotonic()
    listed = pv.ok("list")
    list_s = time.monotonic() - t0
    assert listed.out.count(" online ") == 500

    # stop all, given STOP_ALL_S; past that the rest is cleared directly so the suite stays short
    t0 = time.monotonic()
    stopper = pv.popen("stop", "all")
    try:
        out, err = stopper.communicate(timeout=STOP_ALL_S)
    except subprocess.TimeoutExpired:
        clear_directly(pv)
        pytest.fail(f"`pyvm2 stop all` of 500 idle sleepers did not finish in {STOP_ALL_S:.0f}s "
                    f"(start took {started:.1f}s, list {list_s:.2f}s)")
    stop_s = time.monotonic() - t0
    print(f"500 apps: start {started:.1f}s, list {list_s:.2f}s, stop all {stop_s:.1f}s")
    assert stopper.returncode == 0, (out + err).decode(errors="replace")[-2000:]
    assert Counter(p["pm2_env"]["status"] for p in pv.jlist()) == {"stopped": 500}
    assert app_processes_by_token(pv) == {}


def clear_directly(pv: Pyvm2) -> None:
    """Kill the CLIs, the daemon, then every app process of this home, without pyvm2's help."""
    for p in pv.popens:
        if p.poll() is None:
            p.kill()
            p.communicate()
    daemon = pv.daemon_pid()
    if daemon:
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: alive(daemon), lambda a: not a, what="the killed daemon to be gone")
    left = processes_of_home(pv.home)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)


@pytest.mark.timeout(120)
def test_20_clis_at_once_all_succeed_and_leave_the_right_states(pv: Pyvm2) -> None:
    apps = [{"name": f"a{i:02d}", "script": "sleep", "args": "3600"} for i in range(20)]
    pv.ok("start", str(pv.write_eco(apps)))
    pv.ok("stop", *[f"a{i:02d}" for i in range(10, 15)])
    before = {p["name"]: p["pid"] for p in pv.jlist()}

    commands = ([("list",)] * 5
                + [("restart", f"a{i:02d}") for i in range(0, 5)]
                + [("stop", f"a{i:02d}") for i in range(5, 10)]
                + [("start", f"a{i:02d}") for i in range(10, 15)])
    assert len(commands) == 20
    t0 = time.monotonic()
    running = [(c, pv.popen(*c)) for c in commands]
    failures = []
    for c, p in running:
        out, err = p.communicate(timeout=90)
        text = (out + err).decode(errors="replace")
        if p.returncode != 0 or "Traceback" in text:
            failures.append(f"$ pyvm2 {' '.join(c)} -> {p.returncode}\n{text[-1500:]}")
    print(f"20 concurrent CLIs done in {time.monotonic() - t0:.1f}s")
    assert not failures, "\n".join(failures)

    procs = {p["name"]: p for p in pv.jlist()}
    for i in range(20):
        name, p = f"a{i:02d}", procs[f"a{i:02d}"]
        env = p["pm2_env"]
        if i < 5:
            assert env["status"] == "online" and env["restart_time"] == 1, (name, env)
            assert p["pid"] != before[name]
        elif i < 10:
            assert env["status"] == "stopped", (name, env)
        elif i < 15:
            assert env["status"] == "online" and p["pid"] not in (None, 0), (name, env)
        else:
            assert env["status"] == "online" and p["pid"] == before[name], (name, env)
    assert len(app_processes_by_token(pv)) == 15


def socket_list_s(pv: Pyvm2) -> float:
    """One `list` request on a raw connection: the daemon's own share of `pyvm2 list`."""
    s = connect(pv)
    try:
        t0 = time.monotonic()
        s.sendall(b'{"id": 1, "cmd": "list", "args": {}}\n')
        reply = read_reply(s)
        took = time.monotonic() - t0
    finally:
        s.close()
    assert json.loads(reply)["ok"] is True
    return took


def cli_list_s(pv: Pyvm2) -> float:
    t0 = time.monotonic()
    pv.ok("list")
    return time.monotonic() - t0


@pytest.mark.timeout(120)
def test_an_app_flooding_stdout_does_not_slow_list_beyond_about_twice_idle(pv: Pyvm2) -> None:
    apps = [pv.app(f"calm{i}", "ticker.py", env={"TICK_S": "1"}) for i in range(5)]
    pv.ok("start", str(pv.write_eco(apps)))
    idle_cli = [cli_list_s(pv) for _ in range(15)]
    idle_sock = [socket_list_s(pv) for _ in range(15)]

    # full speed into a real log file; rotation (on by default) keeps the disk use bounded
    pv.ok("start", str(pv.write_eco([pv.app("flood", "flood_forever.py")], name="flood.json")))
    logs = pv.home / "logs"

    def flood_bytes() -> int:
        return sum(p.stat().st_size for p in logs.glob("flood-out.log*"))

    wait_for(flood_bytes, lambda n: n > 20 * 1024 * 1024, timeout=30,
             what="the flood to reach its log")
    busy_cli = [cli_list_s(pv) for _ in range(15)]
    busy_sock = [socket_list_s(pv) for _ in range(15)]
    assert pv.status("flood") == ["online"]

    m = {k: statistics.median(v) for k, v in (("idle cli", idle_cli), ("flood cli", busy_cli),
                                              ("idle socket", idle_sock),
                                              ("flood socket", busy_sock))}
    print("list medians: " + ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in m.items()))
    print(f"flood cli times (ms): {[round(t * 1000) for t in busy_cli]}")
    # generous: the flood takes a whole core of a small machine, and the CLI competes for it
    assert m["flood cli"] <= max(2.5 * m["idle cli"], m["idle cli"] + 0.25), m
    assert m["flood socket"] <= max(3 * m["idle socket"], m["idle socket"] + 0.05), m
