"""pyvm2-runtime as a container's main process: output on its own stdout/stderr, a graceful stop
on SIGTERM, every orphan reaped (also as PID 1 of a PID namespace), exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import PYTHON, Pyvm2, wait_for


class Runtime:
    """A running pyvm2-runtime, its output collected as it comes."""

    def __init__(self, pv: Pyvm2, eco: Path, *args: str, pidns: bool = False) -> None:
        cmd = [PYTHON, "-m", "pyvm2.runtime", str(eco), *args]
        if pidns:
            cmd = ["unshare", "--fork", "--pid", "--mount-proc", *cmd]
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      cwd=pv.workdir, env=pv.env)
        pv.popens.append(self.popen)
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self._threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))]
        for t in self._threads:
            t.start()
        self.pid = self.popen.pid
        if pidns:  # the runtime is unshare's child, PID 1 inside
            self.pid = wait_for(lambda: psutil.Process(self.popen.pid).children(),
                                what="unshare's child")[0].pid

    @staticmethod
    def _read(stream, into: list[bytes]) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            into.append(chunk)

    @property
    def stdout(self) -> str:
        return b"".join(self.out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self.err).decode(errors="replace")

    def wait_out(self, text: str, timeout: float = 20) -> str:
        return wait_for(lambda: self.stdout, lambda s: text in s, timeout=timeout,
                        what=f"{text!r} on the runtime's stdout (stderr: {self.stderr[-2000:]!r})")

    def wait_exit(self, timeout: float = 20) -> int:
        code = self.popen.wait(timeout)
        for t in self._threads:
            t.join(5)
        return code

    def zombies(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.pid).children()
                    if c.status() == psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return []


def test_prefixed_output_and_a_graceful_stop_on_sigterm(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("graceful", "count_signals.py", kill_timeout=5000),
                        pv.app("ticker", "ticker.py")])
    rt = Runtime(pv, eco)
    rt.wait_out("|graceful | ready ")
    rt.wait_out("|ticker   | ")
    jl = pv.jlist()  # `pyvm2 list` works against the runtime
    assert sorted(p["name"] for p in jl) == ["graceful", "ticker"]
    assert all(p["pm2_env"]["status"] == "online" for p in jl)
    graceful_pid = next(p["pid"] for p in jl if p["name"] == "graceful")
    started = time.monotonic()
    os.kill(rt.pid, signal.SIGTERM)
    assert rt.wait_exit() == 0, rt.stderr
    # the app got its kill_signal (SIGINT) once, finished its work, and was not killed
    assert "stop signals delivered: 1" in rt.stdout
    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(graceful_pid) or \
        psutil.Process(graceful_pid).status() == psutil.STATUS_ZOMBIE


def test_an_app_that_ignores_the_stop_signal_is_killed_after_kill_timeout(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("stubborn", "ignore_signals.py", kill_timeout=800)])
    rt = Runtime(pv, eco, "--raw")
    rt.wait_out("ignoring signals\n")
    assert "|" not in rt.stdout  # --raw: no prefixes
    started = time.monotonic()
    os.kill(rt.pid, signal.SIGINT)
    assert rt.wait_exit() == 0, rt.stderr
    assert 0.7 < time.monotonic() - started < 8


def test_it_exits_2_when_every_app_is_down(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("once", "exit_now.py", args=["0"], autorestart=False),
                        pv.app("crash", "exit_now.py", args=["3"], max_restarts=1,
                               min_uptime=5000)])
    rt = Runtime(pv, eco, "--json")
    assert rt.wait_exit(timeout=30) == 2, rt.stderr
    lines = [json.loads(x) for x in rt.stdout.splitlines()]
    assert {(x["app_name"], x["type"]) for x in lines if x["type"] == "out"} == \
        {("once", "out"), ("crash", "out")}
    events = [(x["app_name"], x["status"]) for x in lines if x["type"] == "process_event"]
    assert ("crash", "errored") in events and ("once", "stopped") in events


def test_no_auto_exit_keeps_it_running(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("once", "exit_now.py", args=["0"], autorestart=False)])
    rt = Runtime(pv, eco, "--no-auto-exit")
    rt.wait_out("|once | started")
    pv.wait_status("once", "stopped")
    time.sleep(2.5)  # longer than the auto-exit would wait
    assert rt.popen.poll() is None, rt.stderr
    os.kill(rt.pid, signal.SIGTERM)
    assert rt.wait_exit() == 0, rt.stderr


def test_only_and_env_select_apps_and_variables(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("show", "show_env.py", env={"WHO": "dev", "SHOW_VARS": "WHO"},
                               env_production={"WHO": "prod"}),
                        pv.app("other", "ticker.py")])
    rt = Runtime(pv, eco, "--only", "show", "--env", "production")
    line = rt.wait_out('"WHO": "prod"')
    assert "|other" not in line
    assert [p["name"] for p in pv.jlist()] == ["show"]
    os.kill(rt.pid, signal.SIGTERM)
    assert rt.wait_exit() == 0, rt.stderr


@pytest.mark.parametrize("where", ["subreaper", "pid1"])
def test_orphans_are_reaped(pv: Pyvm2, where: str) -> None:
    if where == "pid1" and (os.getuid() != 0 or shutil.which("unshare") is None):
        pytest.skip("a PID namespace needs root and unshare")
    eco = pv.write_eco([pv.app("orphans", str(Path(__file__).parents[1] / "fixtures" / "orphans.sh"))])
    rt = Runtime(pv, eco, pidns=where == "pid1")
    rt.wait_out("made 20 orphans")
    # each orphan lived 0.1 s; once they are gone, none may stay a zombie of the runtime
    wait_for(rt.zombies, lambda z: not z, what="no zombie children of the runtime")
    time.sleep(0.5)
    assert rt.zombies() == []
    os.kill(rt.pid, signal.SIGTERM)
    assert rt.wait_exit() == 0, rt.stderr


def test_pyvm2_runtime_is_the_same_command(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("once", "exit_now.py", args=["0"], autorestart=False)])
    r = pv.run("runtime", str(eco), "--raw")
    assert r.code == 2, str(r)
    assert r.out.startswith("started "), str(r)
    assert "every app has stopped or errored" in r.err
