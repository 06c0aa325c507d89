"""The daemon itself: one per home under concurrent starts, garbage on its socket, and coming
back after it was killed."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter

import psutil
import pytest
from conftest import Pyvm2, alive, processes_of_home, wait_for


def daemons_of(pv: Pyvm2) -> list[psutil.Process]:
    found = []
    for p in processes_of_home(pv.home):
        try:
            if "pyvm2.daemon" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


@pytest.mark.timeout(120)
def test_two_concurrent_starts_of_one_file_make_one_daemon_and_one_copy_of_each_app(
        pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "ticker.py", env={"TICK_S": "0.5"}),
                        pv.app("beta", "show_env.py")])
    first, second = pv.popen("start", str(eco)), pv.popen("start", str(eco))
    for p in (first, second):
        out, err = p.communicate(timeout=60)
        text = (out + err).decode(errors="replace")
        assert p.returncode == 0, text
        assert "Traceback" not in text, text

    daemons = daemons_of(pv)
    assert len(daemons) == 1, [d.pid for d in daemons]
    assert pv.daemon_pid() == daemons[0].pid
    procs = pv.jlist()
    assert Counter(p["name"] for p in procs) == {"alpha": 1, "beta": 1}, procs
    assert all(p["pm2_env"]["status"] == "online" for p in procs), procs
    # exactly one OS process per app
    app_procs = [p for p in processes_of_home(pv.home) if p.pid != daemons[0].pid
                 and p.ppid() == daemons[0].pid]
    assert len(app_procs) == 2, [p.cmdline() for p in app_procs]


def talk(pv: Pyvm2, payload: bytes, timeout: float = 20) -> bytes:
    """Send raw bytes to the daemon's socket; return what it answers before closing or timing
    out (b"" if it just hangs up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(pv.home / "pyvm2.sock"))
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\n" not in data:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


GARBAGE = {
    "raw bytes": b"\xff\xfe\x00\x01garbage\x80\n",
    "invalid json": b'{"id": 1, "cmd": "ping"\n',
    "json array": b'[1, 2, 3]\n',
    "json string": b'"ping"\n',
    "unknown command": b'{"id": 7, "cmd": "format_disk", "args": {}}\n',
    "args not an object": b'{"id": 8, "cmd": "stop", "args": [1]}\n',
    "bad targets": b'{"id": 9, "cmd": "stop", "args": {"targets": 5}}\n',
    "bad apps": b'{"id": 10, "cmd": "start", "args": {"apps": [{"name": 1}]}}\n',
    "deep nesting": b'{"id": 11, "cmd": "ping", "args": ' + b"[" * 100000 + b"]" * 100000 + b"}\n",
    "5 MB line": b'{"id": 12, "cmd": "ping", "args": {"x": "' + b"a" * (5 * 1024 * 1024) + b'"}}\n',
}


@pytest.mark.parametrize("what", list(GARBAGE))
def test_garbage_on_the_socket_gets_an_error_and_the_daemon_lives(pv: Pyvm2, what: str) -> None:
    pv.ok("ping")
    daemon = pv.daemon_pid()
    answer = talk(pv, GARBAGE[what])
    if answer:
        reply = json.loads(answer.split(b"\n")[0])
        assert reply["ok"] is False, reply
        assert reply["error"]["message"], reply
    r = pv.ok("ping")
    assert "pong" in r.out
    assert pv.daemon_pid() == daemon and alive(daemon)


def test_a_well_formed_request_on_a_raw_socket_is_answered(pv: Pyvm2) -> None:
    pv.ok("ping")
    reply = json.loads(talk(pv, b'{"id": 3, "cmd": "ping", "args": {}}\n'))
    assert reply["id"] == 3 and reply["ok"] is True and reply["data"]["msg"] == "pong"


def test_a_client_that_hangs_up_mid_request_does_not_hurt_the_daemon(pv: Pyvm2) -> None:
    pv.ok("ping")
    for _ in range(20):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(pv.home / "pyvm2.sock"))
        s.sendall(b'{"id": 1, "cmd": "li')
        s.close()
    assert "pong" in pv.ok("ping").out


def test_after_the_daemon_is_sigkilled_the_next_command_starts_a_new_one(pv: Pyvm2) -> None:
    pv.ok("ping")
    old = pv.daemon_pid()
    assert old
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: alive(old), lambda a: not a, what="the killed daemon to be gone")

    r = pv.ok("list")
    assert "Traceback" not in r.out + r.err
    new = pv.daemon_pid()
    assert new and new != old and alive(new)
    assert pv.jlist() == []
    assert "pong" in pv.ok("ping").out


def test_after_the_daemon_is_sigkilled_the_next_one_finds_its_apps_again(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("tick", "ticker.py", env={"TICK_S": "0.1"}),
                        pv.app("calm", "show_env.py")])
    pv.ok("start", str(eco))
    old_daemon = pv.daemon_pid()
    pids = {p["name"]: p["pid"] for p in pv.jlist()}
    os.kill(old_daemon, signal.SIGKILL)
    wait_for(lambda: alive(old_daemon), lambda a: not a, what="the killed daemon to be gone")

    pv.ok("list")
    procs = pv.jlist()
    assert {p["name"]: p["pid"] for p in procs} == pids, procs
    assert all(p["pm2_env"]["status"] == "online" for p in procs), procs
    new_daemon = pv.daemon_pid()
    assert new_daemon != old_daemon
    # no duplicate was started next to the adopted processes
    running = [p for p in processes_of_home(pv.home) if p.pid != new_daemon]
    assert sorted(p.pid for p in running) == sorted(pids.values()), \
        [p.cmdline() for p in running]

    # the adopted app's output still reaches its log
    count = pv.read_log("tick").count("tick ")
    wait_for(lambda: pv.read_log("tick").count("tick "), lambda n: n > count + 5,
             what="the adopted app's log to keep growing")

    # and the adopted apps obey commands
    pv.ok("stop", "all")
    assert not alive(pids["tick"]) and not alive(pids["calm"])
    assert set(pv.status("tick") + pv.status("calm")) == {"stopped"}
