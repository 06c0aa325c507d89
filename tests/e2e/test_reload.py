"""Zero-downtime reload, readiness (notify protocol and Node's IPC) and the sockets the daemon
holds for apps, with the faults around them."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from conftest import Pyvm2, alive, processes_of_home, wait_for

WEB = str(Path(__file__).resolve().parents[2] / "examples" / "web.py")
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Load:
    """A few client threads sending GETs to 127.0.0.1:port as fast as they are answered."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                good = resp.status == 200 and body.startswith(b"hello")
                what = "ok" if good else f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as e:
                what = type(e).__name__
            with self.lock:
                if what == "ok":
                    self.ok += 1
                else:
                    self.failures[what] += 1
            self.stop.wait(0.005)   # steady load that leaves the machine some room

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def web_app(pv: Pyvm2, port: int, **extra: object) -> dict:
    return pv.app("web", WEB, listen=f"127.0.0.1:{port}", wait_ready=True,
                  kill_signal="SIGTERM", env={"WEB_LOG_REQUESTS": "0"}, **extra)


@pytest.mark.parametrize("instances", [1, 2])
def test_reload_under_load_fails_no_request(pv: Pyvm2, instances: int) -> None:
    port = free_port()
    pv.ok("start", str(pv.write_eco([web_app(pv, port, instances=instances)])))
    pids = [p["pid"] for p in pv.wait_status("web", "online")]
    assert len(pids) == instances
    with Load(port) as load:
        wait_for(lambda: load.ok, lambda n: n >= 20, what="the load to get answers")
        for _ in range(3):
            before = load.ok
            pv.ok("reload", "web")
            now = [p["pid"] for p in pv.procs("web")]
            assert not set(now) & set(pids), (now, pids)
            pids = now
            wait_for(lambda b=before: load.ok, lambda n, b=before: n > b + 5,
                     what="answers after the reload")
    assert load.failures == Counter(), f"{dict(load.failures)} failed, {load.ok} answered"
    assert [p["pm2_env"]["restart_time"] for p in pv.procs("web")] == [3] * instances
    assert all(p["pm2_env"]["status"] == "online" for p in pv.procs("web"))


def test_instances_get_the_held_socket_with_the_activation_protocol(pv: Pyvm2, tmp_path: Path) -> None:
    port = free_port()
    sock_path = f"/tmp/pyvm2-test-{os.getpid()}-{port}.sock"
    app = pv.app("held", "ready_app.py", wait_ready=True, kill_signal="SIGTERM",
                 listen=[f"127.0.0.1:{port}", f"unix:{sock_path}"])
    pv.ok("start", str(pv.write_eco([app])))
    pv.wait_log("held", "LISTEN_FDS=2 LISTEN_PID_OK=True LISTEN_FDNAMES=held:held NOTIFY=True")
    pid = pv.proc("held")["pid"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.makefile().readline().strip() == str(pid)
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(5)
        c.connect(sock_path)
        assert c.makefile().readline().strip() == str(pid)
    pv.ok("restart", "held")     # the same sockets across a restart
    new = pv.wait_status("held", "online")[0]["pid"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.makefile().readline().strip() == str(new)
    pv.ok("delete", "held")       # the app is gone: its unix socket file too
    assert not os.path.exists(sock_path)


def test_wait_ready_python_is_launching_until_ready_1(pv: Pyvm2, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    app = pv.app("slow", "ready_app.py", wait_ready=True, listen_timeout=60_000,
                 env={"READY_GATE": str(gate)})
    starter = pv.popen("start", str(pv.write_eco([app])))
    wait_for(lambda: pv.procs("slow"), lambda ps: bool(ps) and ps[0]["pid"],
             what="the app to be spawned")
    assert pv.status("slow") == ["launching"]
    assert "launching" in pv.ok("list").out
    gate.touch()
    pv.wait_status("slow", "online")
    assert starter.wait(30) == 0
    assert "ready and serving" in pv.ok("describe", "slow").out


@needs_node
def test_wait_ready_node_process_send_ready(pv: Pyvm2, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    app = pv.app("nodeapp", "ready_node.js", wait_ready=True, listen_timeout=60_000,
                 env={"READY_GATE": str(gate)})
    starter = pv.popen("start", str(pv.write_eco([app])))
    wait_for(lambda: pv.procs("nodeapp"), lambda ps: bool(ps) and ps[0]["pid"],
             what="the app to be spawned")
    time.sleep(0.3)   # nothing makes it ready before the gate opens
    assert pv.status("nodeapp") == ["launching"]
    gate.touch()
    pv.wait_status("nodeapp", "online")
    assert starter.wait(30) == 0
    pv.wait_log("nodeapp", "sent ready")


def test_silent_app_is_online_after_listen_timeout_with_a_warning(pv: Pyvm2) -> None:
    app = pv.app("mute", "ready_app.py", wait_ready=True, listen_timeout=500,
                 env={"READY": "never"})
    pv.ok("start", str(pv.write_eco([app])))
    pv.wait_status("mute", "online")
    assert "listen_timeout (500ms)" in pv.ok("describe", "mute").out


def test_ready_from_outside_the_app_and_a_flood_are_dropped(pv: Pyvm2, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    app = pv.app("guarded", "ready_app.py", wait_ready=True, listen_timeout=60_000,
                 env={"READY_GATE": str(gate), "FLOOD": "20000"})
    pv.popen("start", str(pv.write_eco([app])))
    wait_for(lambda: pv.procs("guarded"), lambda ps: bool(ps) and ps[0]["pid"],
             what="the app to be spawned")
    notify = str(pv.home / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < 50_000:
            try:
                s.sendto(b"READY=1\nSTATUS=forged", notify)
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
    assert sent > 0
    pv.ok("ping")
    time.sleep(0.3)
    assert pv.status("guarded") == ["launching"]
    assert "forged" not in pv.ok("describe", "guarded").out
    wait_for(lambda: (pv.home / "pyvm2.log").read_text(), lambda t: "dropped" in t,
             what="the dropped messages in the daemon log")
    gate.touch()
    pv.wait_status("guarded", "online")


def test_a_port_in_use_is_a_clear_error(pv: Pyvm2) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = pv.run("start", str(pv.write_eco([web_app(pv, port)])))
    assert r.code != 0 and "Traceback" not in r.out + r.err, r
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in r.err, r
    assert pv.jlist() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind privileged ports")
def test_a_privileged_port_is_a_clear_error(pv: Pyvm2) -> None:
    r = pv.run("start", str(pv.write_eco([pv.app("low", "ready_app.py", listen=":80")])))
    assert r.code != 0 and "port 80 is privileged" in r.err, r


def test_an_address_that_cannot_be_bound_is_a_clear_error(pv: Pyvm2) -> None:
    r = pv.run("start", str(pv.write_eco([pv.app("far", "ready_app.py",
                                                 listen="192.0.2.1:8000")])))
    assert r.code != 0 and "no such address on this machine" in r.err, r
    r = pv.run("start", str(pv.write_eco([pv.app("bad", "ready_app.py", listen="8000")])))
    assert r.code != 0 and '"8000" is not an address' in r.err and "Traceback" not in r.err, r


def test_reload_of_an_app_that_crashes_keeps_the_old_process(pv: Pyvm2, tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    app = pv.app("fragile", "ready_app.py", wait_ready=True, kill_signal="SIGTERM",
                 instances=2, env={"CRASH_IF": str(crash)})
    pv.ok("start", str(pv.write_eco([app])))
    before = [p["pid"] for p in pv.wait_status("fragile", "online")]
    crash.touch()
    r = pv.run("reload", "fragile")
    assert r.code != 0 and "Traceback" not in r.out + r.err, r
    assert "exited with code 3 before it was ready" in r.err, r
    assert f"pid {before[0]}" in r.err and "keeps running" in r.err, r
    assert "binds its own port" in r.err and "pyvm2 restart fragile" in r.err, r
    procs = pv.procs("fragile")
    assert [p["pid"] for p in procs] == before and all(alive(p) for p in before)
    assert [p["pm2_env"]["status"] for p in procs] == ["online", "online"]
    crash.unlink()
    pv.ok("reload", "fragile")
    assert not {p["pid"] for p in pv.procs("fragile")} & set(before)


def test_reload_of_a_replacement_that_never_gets_ready(pv: Pyvm2) -> None:
    app = pv.app("stuck", "ready_app.py", wait_ready=True, listen_timeout=800,
                 kill_signal="SIGTERM", env={"READY": "never"})
    pv.ok("start", str(pv.write_eco([app])))
    old = pv.wait_status("stuck", "online")[0]["pid"]
    r = pv.run("reload", "stuck")
    assert r.code != 0 and "did not say it is ready within listen_timeout (800ms)" in r.err, r
    assert pv.proc("stuck")["pid"] == old and alive(old)


def test_stopping_1_and_never_exiting_is_killed_after_kill_timeout(pv: Pyvm2) -> None:
    app = pv.app("stubborn", "ready_app.py", wait_ready=True, kill_signal="SIGTERM",
                 kill_timeout=500, env={"IGNORE_TERM": "1"})
    pv.ok("start", str(pv.write_eco([app])))
    pid = pv.wait_status("stubborn", "online")[0]["pid"]
    pv.ok("stop", "stubborn")
    assert pv.status("stubborn") == ["stopped"] and not alive(pid)
    log = (pv.home / "pyvm2.log").read_text()
    assert "says it is stopping" in log and "sending SIGKILL" in log


def test_start_or_reload_starts_then_reloads(pv: Pyvm2) -> None:
    port = free_port()
    eco = pv.write_eco([web_app(pv, port), pv.app("other", "ready_app.py")])
    pv.ok("startOrReload", str(eco), "--only", "web")
    assert [p["name"] for p in pv.jlist()] == ["web"]
    first = pv.wait_status("web", "online")[0]["pid"]
    pv.ok("startOrReload", str(eco))
    web = pv.proc("web")
    assert web["pid"] != first and web["pm2_env"]["restart_time"] == 1
    assert pv.status("other") == ["online"]
    other = pv.proc("other")["pid"]
    pv.ok("startOrRestart", str(eco))
    assert pv.proc("other")["pid"] != other


@contextmanager
def reload_in_flight(pv: Pyvm2, name: str) -> Iterator[None]:
    pv.popen("reload", name)
    wait_for(lambda: (pv.home / "pyvm2.log").read_text(),
             lambda t: "reloading: replacement pid" in t, what="the replacement to start")
    yield


def test_daemon_killed_during_a_reload_leaves_one_instance_set(pv: Pyvm2, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    port = free_port()
    app = pv.app("busy", "ready_app.py", wait_ready=True, listen_timeout=60_000,
                 kill_signal="SIGTERM", listen=f"127.0.0.1:{port}",
                 env={"READY_GATE": str(gate)})
    gate.touch()
    pv.ok("start", str(pv.write_eco([app])))
    old = pv.wait_status("busy", "online")[0]["pid"]
    gate.unlink()                      # the replacement will wait for ever
    with reload_in_flight(pv, "busy"):
        daemon = pv.daemon_pid()
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: alive(daemon), lambda a: not a, what="the daemon to die")
    pv.ok("ping")                      # a new daemon
    assert pv.proc("busy")["pid"] == old
    wait_for(lambda: [p.pid for p in processes_of_home(pv.home)
                      if "ready_app.py" in " ".join(p.cmdline())],
             lambda pids: pids == [old], what="only the old instance to be left")
    gate.touch()
    pv.ok("reload", "busy")            # the sockets are bound again by the new daemon
    new = pv.proc("busy")["pid"]
    assert new != old
    wait_for(lambda: psutil.pid_exists(old) and alive(old), lambda a: not a,
             what="the old instance to go")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.makefile().readline().strip() == str(new)
