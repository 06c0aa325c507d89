"""Shared helpers for the end-to-end suite: a real daemon in a private PYVM2_HOME per test, the
CLI run as a subprocess, waits that show what they last saw, and a teardown that leaves nothing
running (and fails the test when it had to clean up after pyvm2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TOKEN_VAR = "PYVM2_RUN_TOKEN"
PYTHON = sys.executable

#: Generous deadlines: these tests run on small, noisy machines.
DEADLINE_S = 20.0
CLI_TIMEOUT_S = 60.0


def fixture(name: str) -> str:
    return str(FIXTURES / name)


_UNSET = object()


def wait_for(probe: Callable[[], Any], check: Callable[[Any], bool] = bool, *,
             timeout: float = DEADLINE_S, what: str = "the condition", interval: float = 0.05) -> Any:
    """Poll probe() every `interval` until check(value) holds; return that value. On timeout fail,
    printing the last value seen (or the last exception the probe raised)."""
    deadline = time.monotonic() + timeout
    last: Any = _UNSET
    while True:
        try:
            last = probe()
            if check(last):
                return last
        except Exception as e:  # a probe may race with the state it observes
            last = e
        if time.monotonic() >= deadline:
            seen = "nothing" if last is _UNSET else repr(last)
            if len(seen) > 4000:
                seen = seen[:4000] + "..."
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen}",
                        pytrace=False)
        time.sleep(interval)


@dataclass
class Result:
    args: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return (f"$ pyvm2 {' '.join(self.args)}\nexit code {self.code}\n"
                f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}")

    @property
    def first_err_line(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        return lines[0] if lines else ""


def proc_environ(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def alive(pid: int) -> bool:
    """True while pid runs; a zombie counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def processes_of_home(home: Path) -> list[psutil.Process]:
    """Every live process started for this home: the daemon and every app process (they carry
    PYVM2_HOME in their environment), plus any CLI left running."""
    me = os.getpid()
    found = []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        env = proc_environ(p.pid)
        if not env or env.get("PYVM2_HOME") != str(home):
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        found.append(p)
    return found


def describe_procs(procs: Iterable[psutil.Process]) -> str:
    out = []
    for p in procs:
        try:
            out.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            out.append(f"  pid {p.pid}: (gone)")
    return "\n".join(out)


@dataclass
class Pyvm2:
    """The CLI in one private home, plus helpers to read its state."""

    home: Path
    workdir: Path
    popens: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != TOKEN_VAR}
        env.update(PYVM2_HOME=str(self.home), NO_COLOR="1", COLUMNS="200")
        env.pop("FORCE_COLOR", None)
        return env

    def cmd(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "pyvm2", *args]

    def run(self, *args: str, timeout: float = CLI_TIMEOUT_S, cwd: Path | str | None = None,
            env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(self.cmd(*args), capture_output=True, timeout=timeout,
                              cwd=str(cwd or self.workdir), env=env or self.env)
        return Result(list(args), proc.returncode,
                      proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))

    def ok(self, *args: str, **kw: Any) -> Result:
        """Run and require exit code 0 and no traceback."""
        r = self.run(*args, **kw)
        assert r.code == 0, str(r)
        assert "Traceback" not in r.out + r.err, str(r)
        return r

    def popen(self, *args: str, cwd: Path | str | None = None) -> subprocess.Popen:
        p = subprocess.Popen(self.cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=str(cwd or self.workdir), env=self.env)
        self.popens.append(p)
        return p

    # ---- state ---------------------------------------------------------------------------
    def jlist(self) -> list[dict]:
        r = self.run("jlist")
        assert r.code == 0, str(r)
        return json.loads(r.out)

    def procs(self, name: str) -> list[dict]:
        return sorted((p for p in self.jlist() if p["name"] == name), key=lambda p: p["pm_id"])

    def proc(self, name: str) -> dict:
        found = self.procs(name)
        assert len(found) == 1, f"expected one process named {name!r}, found {len(found)}"
        return found[0]

    def status(self, name: str) -> list[str]:
        return [p["pm2_env"]["status"] for p in self.procs(name)]

    def wait_status(self, name: str, *wanted: str, timeout: float = DEADLINE_S) -> list[dict]:
        """Wait until every instance of `name` has one of the wanted statuses."""
        got = wait_for(lambda: [(p["pm_id"], p["pm2_env"]["status"], p["pid"],
                                 p["pm2_env"]["restart_time"]) for p in self.procs(name)],
                       lambda seen: bool(seen) and all(s in wanted for _, s, _, _ in seen),
                       timeout=timeout, what=f"{name} to be {' or '.join(wanted)}")
        assert got
        return self.procs(name)

    def daemon_pid(self) -> int | None:
        try:
            return int((self.home / "pyvm2.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def log_path(self, name: str, stream: str = "out", pm_id: int | None = None) -> Path:
        kind = "out" if stream == "out" else "error"
        suffix = "" if pm_id is None else f"-{pm_id}"
        return self.home / "logs" / f"{name}-{kind}{suffix}.log"

    def read_log(self, name: str, stream: str = "out", pm_id: int | None = None) -> str:
        try:
            return self.log_path(name, stream, pm_id).read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, name: str, text: str, stream: str = "out", pm_id: int | None = None,
                 timeout: float = DEADLINE_S) -> str:
        return wait_for(lambda: self.read_log(name, stream, pm_id), lambda s: text in s,
                        timeout=timeout, what=f"{text!r} in the {stream} log of {name}")

    # ---- files ---------------------------------------------------------------------------
    def write_eco(self, apps: Any, name: str = "eco.json", folder: Path | None = None) -> Path:
        path = (folder or self.workdir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = apps if isinstance(apps, str) else json.dumps(
            {"apps": apps} if isinstance(apps, list) else apps, indent=2)
        path.write_text(body)
        return path

    def app(self, name: str, script: str, **options: Any) -> dict:
        return {"name": name, "script": fixture(script) if "/" not in script else script,
                **options}

    # ---- teardown ------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Stop everything this home started. Returns what pyvm2 itself left behind."""
        problems: list[str] = []
        for p in self.popens:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        try:
            r = self.run("kill", timeout=30)
            if r.code != 0 or "Traceback" in r.out + r.err:
                problems.append(f"`pyvm2 kill` failed:\n{r}")
        except subprocess.TimeoutExpired:
            problems.append("`pyvm2 kill` did not return within 30s")
        pid = self.daemon_pid()
        if pid is not None and alive(pid) and _is_daemon(pid):
            problems.append(f"the daemon (pid {pid}) was still running after `pyvm2 kill`")
            os.kill(pid, signal.SIGKILL)
        # give processes that were just signalled a moment to be reaped
        try:
            left = wait_for(lambda: processes_of_home(self.home), lambda ps: not ps,
                            timeout=5, what="every process of this home to be gone")
        except pytest.fail.Exception:
            left = processes_of_home(self.home)
        if left:
            problems.append("processes left behind:\n" + describe_procs(left))
            for p in left:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(left, timeout=5)
        return problems


def _is_daemon(pid: int) -> bool:
    try:
        return "pyvm2.daemon" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


@pytest.fixture
def pv(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Pyvm2:
    # a short home: the socket path must fit in sun_path (108 bytes)
    home = tmp_path_factory.mktemp("h")
    work = tmp_path / "work"
    work.mkdir()
    pyvm2 = Pyvm2(home=home, workdir=work)
    yield pyvm2
    problems = pyvm2.cleanup()
    if problems:
        pytest.fail("cleanup after the test found:\n" + "\n".join(problems), pytrace=False)


needs_php = pytest.mark.skipif(shutil.which("php") is None, reason="php is not installed")
