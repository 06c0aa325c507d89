#!/usr/bin/env python3
"""Side-by-side benchmark: pyvm2 against pm2 and supervisord on the same machine, in one run.

    python3 bench/run.py [--size smoke|full] [--managers pyvm2,pm2,supervisord] [--json out.json]

Every manager runs the same child program (bench/child.py, bench/sleeper.sh) from its own private
home in a temporary folder; everything started is stopped by pid at the end. See bench/README.md
for what each row measures and how to read the table.
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import json
import math
import os
import platform
import pty
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reload_bench import phase_reload
from web import phase_web

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
SLEEPER = HERE / "sleeper.sh"
PY = sys.executable
SH = shutil.which("sh") or "/bin/sh"
CLK = os.sysconf("SC_CLK_TCK")
TAG_VAR = "PYVM2_BENCH_TAG"
MANAGERS = ("pyvm2", "pm2", "supervisord")
MIB = 1024 * 1024
SHARED = "_"                # the column key of numbers that belong to no manager (the floors)
MB = 1_000_000

SIZES: dict[str, dict] = {
    "smoke": dict(
        list_apps=3, list_reps=3, start_reps=3, cold_apps=5, cold_reps=1, idle_s=2.0,
        restart_reps=2, min_uptime_ms=500, live_s=0.8, crash_s=3.0,
        log_bytes=5 * MB, log_reps=1, watch_bursts=1, watch_ready_s=1.0, watch_count_s=1.5,
        mem_reps=1, mem_timeout_s=5.0, mem_wait_s=1.0, cost_workers=4, cost_idle_s=1.0,
        mem_limits={10: "40M", 500: "100M"},
        scale_apps=50, scale_list_reps=3, scale_idle_s=2.0, scale_all_managers=False,
        big_apps=40, big_timeout_s=120.0,
        monit_s=2.0,
    ),
    "full": dict(
        list_apps=10, list_reps=20, start_reps=10, cold_apps=100, cold_reps=3, idle_s=30.0,
        restart_reps=8, min_uptime_ms=2000, live_s=2.5, crash_s=10.0,
        log_bytes=200 * MB, log_reps=3, watch_bursts=5, watch_ready_s=2.0, watch_count_s=3.0,
        mem_reps=3, mem_timeout_s=45.0, mem_wait_s=8.0, cost_workers=50, cost_idle_s=30.0,
        mem_limits={10: "100M", 500: "300M"},
        scale_apps=1000, scale_list_reps=10, scale_idle_s=10.0, scale_all_managers=True,
        big_apps=5000, big_timeout_s=300.0,
        monit_s=10.0,
    ),
}
MEMORY_LIMIT = "100M"
MEMORY_LIMIT_BYTES = 100 * MIB
GUARD_LIMIT = "1G"          # the memory guard of the idle test: on, never reached
#: growth rate (MB/s) -> pacing interval (s) of the memory reaction rows (limits: per size)
GROWTH = {10: 0.1, 500: 0.01}
COST_MB = 20                # the pre-forked tree of the memory-measure row shares this much
DATE_FORMAT = "YYYY-MM-DD HH:mm:ss"


class BenchError(Exception):
    """A measurement could not be taken; the message becomes the cell's n/a reason."""


# ---- /proc --------------------------------------------------------------------------------------

def proc_stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2:].split()
    except (OSError, ValueError):
        return None


def cpu_seconds(pids: list[int], with_children: bool = False) -> float:
    """utime+stime of the processes (all threads), plus cutime+cstime (reaped children) if asked."""
    ticks = 0
    for pid in pids:
        st = proc_stat(pid)
        if st is None:
            continue
        ticks += int(st[11]) + int(st[12])
        if with_children:
            ticks += int(st[13]) + int(st[14])
    return ticks / CLK


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[0] != b"Z"


def tagged_pids(tag: str) -> list[int]:
    """Every process whose environment carries this run's tag: the daemons and their children."""
    needle = f"{TAG_VAR}={tag}\0".encode()
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read() + b"\0"
        except OSError:
            continue
        if needle in env:
            out.append(int(entry))
    return out


# ---- small helpers --------------------------------------------------------------------------------

def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.01) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timeout {timeout:.0f}s: {what}")
        time.sleep(interval)


def read_events(path: Path) -> list[tuple[str, int, float, str]]:
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue
        try:
            out.append((parts[0], int(parts[1]), float(parts[2]), parts[3] if len(parts) > 3 else ""))
        except ValueError:
            continue
    return out


def count_markers(d: Path) -> int:
    try:
        return sum(1 for n in os.listdir(d) if not n.endswith(".tmp"))
    except OSError:
        return 0


def _drain_pty(fd: int) -> None:
    """Read and drop a terminal's output, so the program drawing on it never blocks."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


def last_marker(d: Path, n: int) -> float | None:
    """When the last of n children wrote its marker (wall clock), or None while some are missing.
    The children's own timestamps make the result independent of how often the bench polls."""
    try:
        names = [x for x in os.listdir(d) if not x.endswith(".tmp")]
    except OSError:
        return None
    if len(names) < n:
        return None
    latest = 0.0
    for x in names:
        try:
            latest = max(latest, os.stat(d / x).st_mtime)
        except OSError:
            return None
    return latest


class Background:
    """Run a blocking call (a manager's start command) in a thread while the bench polls."""

    def __init__(self, fn: Callable[[], object]) -> None:
        import threading

        self.result: object = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = fn()
            except BaseException as e:  # handed to join()
                self.error = e

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> object:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise BenchError(f"the start command did not return within {timeout:.0f}s")
        if self.error is not None:
            raise self.error
        return self.result


_NEUTRAL: str | None = None


def neutral_cwd() -> str:
    """An empty folder to run commands from: `python -m pyvm2` started next to a folder named
    pyvm2 (a manager's home) would import that folder instead of the package."""
    global _NEUTRAL
    if _NEUTRAL is None:
        _NEUTRAL = tempfile.mkdtemp(prefix="pyvm2-bench-cwd-")
        atexit.register(shutil.rmtree, _NEUTRAL, True)
    return _NEUTRAL


def run(argv: list[str], env: dict[str, str], timeout: float, ok_codes=(0,),
        cwd: str | None = None) -> subprocess.CompletedProcess:
    try:
        cp = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=timeout, cwd=cwd or neutral_cwd())
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{_short(argv)}` did not finish within {timeout:.0f}s") from None
    except OSError as e:
        raise BenchError(f"cannot run `{_short(argv)}`: {e.strerror or e}") from None
    if ok_codes is not None and cp.returncode not in ok_codes:
        tail = (cp.stderr or cp.stdout or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"`{_short(argv)}` exited {cp.returncode}: {' | '.join(tail)[:200]}")
    return cp


def _short(argv: list[str]) -> str:
    names = [os.path.basename(a) if os.path.isabs(a) else a for a in argv]
    return " ".join(names)[:80]


def timed(argv: list[str], env: dict[str, str], timeout: float, ok_codes=(0,)) -> float:
    t = time.perf_counter()
    run(argv, env, timeout, ok_codes)
    return time.perf_counter() - t


# ---- what the managers run -----------------------------------------------------------------------

@dataclass
class App:
    name: str
    argv: list[str]            # interpreter, script, args
    cwd: str
    out: str
    err: str
    min_uptime_ms: int = 1000
    max_restarts: int = 16
    memory_limit: str | None = None
    watch: bool = False
    date_format: str | None = None
    no_rotation: bool = False      # pyvm2 rotates logs by default; the others do not

    def ecosystem(self, manager: str) -> dict:
        """The app in pm2's ecosystem format, which pyvm2 reads as is."""
        d = {
            "name": self.name, "script": self.argv[1], "interpreter": self.argv[0],
            "args": self.argv[2:], "cwd": self.cwd, "out_file": self.out, "error_file": self.err,
            "autorestart": True, "restart_delay": 0, "min_uptime": self.min_uptime_ms,
            "max_restarts": self.max_restarts,
        }
        if self.memory_limit:
            d["max_memory_restart"] = self.memory_limit
        if self.watch:
            d["watch"] = True
        if self.date_format:
            d["log_date_format"] = self.date_format
        if self.no_rotation and manager == "pyvm2":
            d["log_max_size"] = 0
        return d

    def supervisor_section(self, autostart: bool = True) -> str:
        command = " ".join(shlex.quote(a) for a in self.argv).replace("%", "%%")
        lines = [
            f"[program:{self.name}]", f"command={command}", f"directory={self.cwd}",
            f"autostart={str(autostart).lower()}", "autorestart=true",
            f"startsecs={math.ceil(self.min_uptime_ms / 1000)}", f"startretries={self.max_restarts}",
            "stopsignal=INT", "stopwaitsecs=5", "stopasgroup=true", "killasgroup=true",
            f"stdout_logfile={self.out}", f"stderr_logfile={self.err}",
            "stdout_logfile_maxbytes=0", "stderr_logfile_maxbytes=0",
            "stdout_logfile_backups=0", "stderr_logfile_backups=0",
        ]
        return "\n".join(lines) + "\n"


class Manager:
    key = ""
    features: dict[str, str] = {}   # feature -> reason it is not available

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.root = bench.root / self.key
        self.env = dict(bench.env)
        self.broken: str | None = None

    def check(self) -> str | None:
        """None when usable, else why not."""
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    def boot(self) -> None:
        raise NotImplementedError

    def daemon_pids(self) -> list[int]:
        raise NotImplementedError

    def start(self, apps: list[App], timeout: float) -> float:
        raise NotImplementedError

    def start_one(self, app: App, timeout: float) -> float:
        """Seconds until the command that starts one more app (the daemon already up) returns."""
        return self.start([app], timeout)

    def delete_all(self, timeout: float) -> None:
        raise NotImplementedError

    def stop_all(self, timeout: float) -> None:
        raise NotImplementedError

    def list_cmds(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def unsupported(self, feature: str) -> str | None:
        return self.features.get(feature)

    def daemon_pid(self) -> int:
        pids = self.daemon_pids()
        if not pids:
            raise BenchError(f"{self.key} daemon is not running")
        return pids[0]

    def _ecosystem_file(self, apps: list[App]) -> Path:
        self.bench.seq += 1
        path = self.bench.work / f"apps-{self.key}-{self.bench.seq}.json"
        path.write_text(json.dumps({"apps": [a.ecosystem(self.key) for a in apps]}, indent=1))
        return path


def source_digest(where: str) -> str:
    """A short hash of a package's .py files, to tell whether its code changed during the run."""
    import hashlib

    h = hashlib.sha1()
    for p in sorted(Path(where).rglob("*.py")):
        try:
            h.update(str(p.relative_to(where)).encode() + b"\0" + p.read_bytes())
        except OSError:
            continue
    return h.hexdigest()[:10]


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _console_script(name: str) -> str | None:
    """The console script next to this interpreter, else one on PATH that is not a pyenv shim."""
    own = Path(sys.prefix) / "bin" / name
    if own.exists():
        return str(own)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d) / name
        if "shims" not in p.parts and p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


class Pyvm2(Manager):
    key = "pyvm2"

    def check(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("pyvm2") is None:
            return f"pyvm2 is not importable by {PY}"
        exe = _console_script("pyvm2")
        self.cli = [exe] if exe else [PY, "-m", "pyvm2"]
        self.mod = [PY, "-m", "pyvm2"]
        self.env["PYVM2_HOME"] = str(self.root)
        return None

    def version(self) -> str:
        cp = run([PY, "-c", "import pyvm2, os; print(pyvm2.__version__, os.path.dirname(pyvm2.__file__))"],
                 self.env, 30, ok_codes=None)
        version, _, where = cp.stdout.decode().strip().partition(" ")
        self.source = where
        try:
            head = run(["git", "-C", where, "rev-parse", "--short", "HEAD"], self.env, 10).stdout
            dirty = run(["git", "-C", where, "status", "--porcelain", "--", "."], self.env, 10).stdout
            return f"{version or '?'} (commit {head.decode().strip()}{' + local changes' if dirty.strip() else ''})"
        except BenchError:
            return f"{version or '?'} (from {where})"

    def boot(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(self.cli + ["ping"], self.env, 60)
        pid = wait_for(lambda: _pid_from(self.root / "pyvm2.pid"), 10, "pyvm2.pid")
        self.bench.reaper.track(pid)

    def daemon_pids(self) -> list[int]:
        pid = _pid_from(self.root / "pyvm2.pid")
        return [pid] if pid and alive(pid) else []

    #: apps per ecosystem file: pyvm2 reads files up to 8 MiB (about 20,000 of these apps), so
    #: every size of the bench is one file, as pm2 gets it
    FILE_APPS = 20_000

    def start(self, apps: list[App], timeout: float) -> float:
        took = 0.0
        for i in range(0, len(apps), self.FILE_APPS):
            path = self._ecosystem_file(apps[i:i + self.FILE_APPS])
            took += timed(self.cli + ["start", str(path)], self.env, max(10.0, timeout - took))
        return took

    def delete_all(self, timeout: float) -> None:
        cp = run(self.cli + ["delete", "all"], self.env, timeout, ok_codes=None)
        if cp.returncode != 0 and b"no process" not in cp.stderr + cp.stdout:
            raise BenchError(f"pyvm2 delete all exited {cp.returncode}: {cp.stderr.decode(errors='replace')[-200:]}")

    def stop_all(self, timeout: float) -> None:
        run(self.cli + ["stop", "all"], self.env, timeout)

    def list_cmds(self) -> dict[str, list[str]]:
        return {"list": self.cli + ["list"], "jlist": self.cli + ["jlist"],
                "list_m": self.mod + ["list"], "jlist_m": self.mod + ["jlist"]}

    def shutdown(self) -> None:
        if self.daemon_pids():
            run(self.cli + ["kill"], self.env, 120, ok_codes=None)


class Pm2(Manager):
    key = "pm2"

    def check(self) -> str | None:
        exe = _console_script("pm2")
        if exe is None:
            return "pm2 not on PATH (npm install -g pm2)"
        self.cli = [exe]
        self.env["PM2_HOME"] = str(self.root)
        return None

    def version(self) -> str:
        cp = run(self.cli + ["-v"], self.env, 30, ok_codes=None)
        return cp.stdout.decode().strip().splitlines()[-1] if cp.stdout.strip() else "?"

    def boot(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        run(self.cli + ["ping"], self.env, 60)
        pid = wait_for(lambda: _pid_from(self.root / "pm2.pid"), 10, "pm2.pid")
        self.bench.reaper.track(pid)

    def daemon_pids(self) -> list[int]:
        pid = _pid_from(self.root / "pm2.pid")
        return [pid] if pid and alive(pid) else []

    def start(self, apps: list[App], timeout: float) -> float:
        path = self._ecosystem_file(apps)
        return timed(self.cli + ["start", str(path)], self.env, timeout)

    def delete_all(self, timeout: float) -> None:
        run(self.cli + ["delete", "all"], self.env, timeout, ok_codes=None)

    def stop_all(self, timeout: float) -> None:
        run(self.cli + ["stop", "all"], self.env, timeout)

    def list_cmds(self) -> dict[str, list[str]]:
        return {"list": self.cli + ["list"], "jlist": self.cli + ["jlist"]}

    def shutdown(self) -> None:
        if self.daemon_pids():
            run(self.cli + ["kill"], self.env, 120, ok_codes=None)


class Supervisord(Manager):
    key = "supervisord"
    features = {"watch": "no watch", "memory_limit": "no memory limit",
                "date_format": "no date prefix", "jlist": "no JSON list"}

    def check(self) -> str | None:
        import importlib.util

        d, c = _console_script("supervisord"), _console_script("supervisorctl")
        if d and c:
            self.daemon_cmd, self.ctl_cmd = [d], [c]
        elif importlib.util.find_spec("supervisor") is not None:
            self.daemon_cmd = [PY, "-m", "supervisor.supervisord"]
            self.ctl_cmd = [PY, "-m", "supervisor.supervisorctl"]
        else:
            return "supervisor not installed (pip install supervisor)"
        self.conf = self.root / "supervisord.conf"
        self.programs = self.root / "programs"
        self.proc: subprocess.Popen | None = None
        return None

    def version(self) -> str:
        cp = run(self.daemon_cmd + ["--version"], self.env, 30, ok_codes=None)
        return cp.stdout.decode().strip() or "?"

    def ctl(self, *args: str) -> list[str]:
        return self.ctl_cmd + ["-c", str(self.conf), *args]

    def boot(self) -> None:
        self.programs.mkdir(mode=0o700, parents=True, exist_ok=True)
        r = self.root
        self.conf.write_text(
            f"[unix_http_server]\nfile={r}/supervisor.sock\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={r}/supervisord.log\npidfile={r}/supervisord.pid\n"
            f"childlogdir={r}\nminfds=16384\nminprocs=4096\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{r}/supervisor.sock\n\n"
            f"[include]\nfiles={self.programs}/*.conf\n")
        log = open(r / "supervisord.out", "ab")
        try:
            self.proc = subprocess.Popen(self.daemon_cmd + ["-n", "-c", str(self.conf)],
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True, cwd=str(r))
        finally:
            log.close()
        self.bench.reaper.track(self.proc.pid)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"supervisord exited {self.proc.returncode}; see {r}/supervisord.out")
            return run(self.ctl("pid"), self.env, 10, ok_codes=None).returncode == 0

        wait_for(up, 30, "supervisord answering", interval=0.05)

    def daemon_pids(self) -> list[int]:
        if self.proc is not None and self.proc.poll() is None:
            return [self.proc.pid]
        return []

    def start(self, apps: list[App], timeout: float) -> float:
        (self.programs / "apps.conf").write_text("\n".join(a.supervisor_section() for a in apps))
        return timed(self.ctl("update"), self.env, timeout)

    def start_one(self, app: App, timeout: float) -> float:
        """`supervisorctl start NAME` of a program added (not started) by `update` first."""
        conf = self.programs / "apps.conf"
        before = conf.read_text() if conf.exists() else ""
        conf.write_text(before + "\n" + app.supervisor_section(autostart=False))
        run(self.ctl("update"), self.env, timeout)
        return timed(self.ctl("start", app.name), self.env, timeout)

    def delete_all(self, timeout: float) -> None:
        # `update` alone stops removed groups one per second; `stop all` stops them together
        t = time.monotonic()
        run(self.ctl("stop", "all"), self.env, timeout, ok_codes=None)
        try:
            (self.programs / "apps.conf").unlink()
        except FileNotFoundError:
            pass
        run(self.ctl("update"), self.env, max(10.0, timeout - (time.monotonic() - t)))

    def stop_all(self, timeout: float) -> None:
        run(self.ctl("stop", "all"), self.env, timeout)

    def list_cmds(self) -> dict[str, list[str]]:
        return {"list": self.ctl("status")}

    def shutdown(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        run(self.ctl("shutdown"), self.env, 120, ok_codes=None)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


MANAGER_CLASSES: dict[str, type[Manager]] = {"pyvm2": Pyvm2, "pm2": Pm2, "supervisord": Supervisord}


# ---- clean-up ---------------------------------------------------------------------------------

class Reaper:
    """Stops, by pid, every process this run started: the daemons it tracked and anything that
    carries the run's tag in its environment (which every daemon and child inherits)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.pids: set[int] = set()

    def track(self, pid: int) -> None:
        self.pids.add(pid)

    def reap(self) -> list[str]:
        """Stop what is still alive; return `pid cmdline` of each."""
        me = os.getpid()
        targets = {p for p in self.pids | set(tagged_pids(self.tag)) if p != me and alive(p)}
        described = [f"{p} {_cmdline(p)}" for p in sorted(targets)]
        for pid in targets:
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(alive(p) for p in targets):
            time.sleep(0.05)
        left = {p for p in targets | set(tagged_pids(self.tag)) if p != me and alive(p)}
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return described


# ---- results ------------------------------------------------------------------------------------

@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    na: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values and self.na is None else None


@dataclass
class Row:
    key: str
    label: str
    unit: str
    digits: int
    higher_better: bool = False
    shared: bool = False        # not a manager's number: shown once, in the first column


ROWS: list[Row] = [
    Row("floor", "`python3 -c pass` (the floor)", "s", 3, shared=True),
    Row("list", "list, {list_apps} apps (pm2 list; supervisorctl status)", "s", 3),
    Row("jlist", "jlist, {list_apps} apps", "s", 3),
    Row("list_m", "`python -m pyvm2 list`, {list_apps} apps", "s", 3),
    Row("jlist_m", "`python -m pyvm2 jlist`, {list_apps} apps", "s", 3),
    Row("rss0", "daemon RSS, 0 apps", "MiB", 1),
    Row("rss_list", "daemon RSS, {list_apps} apps", "MiB", 1),
    Row("rss_cold", "daemon RSS, {cold_apps} apps", "MiB", 1),
    Row("idle", "daemon CPU, {cold_apps} idle apps, {idle_s:.0f} s", "% core", 2),
    Row("idle_guard", "same, max_memory_restart on all", "% core", 2),
    Row("restart", "restart after a stable exit (exit -> first line)", "ms", 1),
    Row("crash_cpu", "crash loop {crash_s:.0f} s: daemon + children CPU", "% core", 2),
    Row("crash_starts", "crash loop {crash_s:.0f} s: child starts", "count", 0),
    Row("start", "start of one app, daemon up: the command returns", "s", 3),
    Row("cold_floor", "{cold_apps} children spawned directly (the floor)", "s", 3, shared=True),
    Row("cold", "{cold_apps} apps: start -> all online", "s", 3),
    Row("cold_cmd", "{cold_apps} apps: start command returns", "s", 3),
    Row("log_wall", "{log_mb} MB of stdout -> in the log file", "s", 2),
    Row("log_rate", "  throughput", "MB/s", 1, higher_better=True),
    Row("log_cpu", "  daemon CPU", "s", 2),
    Row("log_cpu_mb", "  daemon CPU per MB", "ms/MB", 2),
    Row("logd_wall", "same with log_date_format", "s", 2),
    Row("logd_rate", "  throughput", "MB/s", 1, higher_better=True),
    Row("logd_cpu", "  daemon CPU", "s", 2),
    Row("logd_cpu_mb", "  daemon CPU per MB", "ms/MB", 2),
    Row("watch", "watch: file change -> new child's first line", "ms", 1),
    Row("watch_restarts", "watch: restarts per burst of 5 writes", "count", 1),
    Row("memory", "memory limit crossed -> stop signal", "s", 3),
    Row("mem10", "  same, 10 MB/s after {mem_wait_s:.0f} s idle", "s", 3),
    Row("mem500", "  same, 500 MB/s after {mem_wait_s:.0f} s idle", "s", 3),
    Row("memcost_rss", "memory measure: 1+{cost_workers} procs, limit above RSS, CPU", "% core", 2),
    Row("memcost_pss", "  limit between PSS and RSS sum: CPU", "% core", 2),
    Row("memcost_kept", "  ... restarts (shared pages counted once: 0)", "count", 0),
    Row("scale_floor", "{scale_apps} sleepers spawned directly (the floor)", "s", 3, shared=True),
    Row("scale_start", "{scale_apps} apps: start -> all online", "s", 2),
    Row("scale_list", "{scale_apps} apps: list", "s", 3),
    Row("scale_rss", "{scale_apps} apps: daemon RSS", "MiB", 1),
    Row("scale_fds", "{scale_apps} apps: daemon open fds", "count", 0),
    Row("scale_fds_app", "{scale_apps} apps: daemon fds per app", "count", 2),
    Row("scale_idle", "{scale_apps} apps: daemon CPU idle, {scale_idle_s:.0f} s", "% core", 2),
    Row("scale_delete", "{scale_apps} apps: delete all", "s", 2),
    Row("big_floor", "{big_apps} sleepers spawned directly (the floor)", "s", 2, shared=True),
    Row("big_start", "{big_apps} apps: start -> all online", "s", 2),
    Row("big_list", "{big_apps} apps: list", "s", 3),
    Row("big_rss", "{big_apps} apps: daemon RSS", "MiB", 1),
    Row("big_fds_app", "{big_apps} apps: daemon fds per app", "count", 2),
    Row("big_idle", "{big_apps} apps: daemon CPU idle, {scale_idle_s:.0f} s", "% core", 2),
    Row("big_stop", "{big_apps} apps: stop all", "s", 2),
    Row("monit_idle", "monit open on 3 idle apps, {monit_s:.0f} s: its own CPU", "% core", 2),
    Row("reload_fail_1", "requests failed in 3 reloads under load, 1 instance", "count", 0),
    Row("reload_fail_2", "requests failed in 3 reloads under load, 2 instances", "count", 0),
    Row("web_api", "web: GET /api/apps, {scale_apps} apps", "s", 3),
    Row("web_metrics", "web: GET /metrics, {scale_apps} apps", "s", 3),
    Row("web_event", "web: kill -9 -> state event on /api/events", "s", 3),
    Row("web_rss", "web: server RSS", "MiB", 1),
    Row("web_idle", "web: server idle CPU, {scale_idle_s:.0f} s", "% core", 2),
    Row("web_daemon_idle", "web: daemon idle CPU, server subscribed", "% core", 2),
    Row("web_paint", "web: page first contentful paint (Chromium)", "s", 3),
    Row("web_table", "web: page table holds all {scale_apps} apps", "s", 3),
]
ROW_BY_KEY = {r.key: r for r in ROWS}


@dataclass
class Target:
    row: str
    text: str
    check: Callable[[Bench], tuple[str, bool | None]]   # (shown value, met?) ; met None = n/a


def ratio_target(row: str, other: str, limit: float, text: str, at_least: bool = False) -> Target:
    def check(b: Bench) -> tuple[str, bool | None]:
        mine, theirs = b.median(row, "pyvm2"), b.median(row, other)
        if mine is None:
            return b.why(row, "pyvm2"), None
        if theirs is None:
            return b.why(row, other), None
        if theirs == 0:
            return f"n/a ({other} measured 0)", None
        r = mine / theirs
        return f"{r:.3f}x", (r >= limit if at_least else r <= limit)

    return Target(row, text, check)


def abs_target(row: str, limit: float, text: str) -> Target:
    def check(b: Bench) -> tuple[str, bool | None]:
        v = b.median(row, "pyvm2")
        if v is None:
            return b.why(row, "pyvm2"), None
        return f"{v:.{ROW_BY_KEY[row].digits}f}", v <= limit

    return Target(row, text, check)


def floor_target(row: str, floor_row: str, limit: float, text: str) -> Target:
    def check(b: Bench) -> tuple[str, bool | None]:
        fkey = SHARED if ROW_BY_KEY[floor_row].shared else "pyvm2"
        v, f = b.median(row, "pyvm2"), b.median(floor_row, fkey)
        if v is None:
            return b.why(row, "pyvm2"), None
        if not f:
            return b.why(floor_row, fkey), None
        return f"{v / f:.3f}x", v / f <= limit

    return Target(row, text, check)


def cross_target(row: str, other_row: str, other: str, limit: float, text: str) -> Target:
    """pyvm2's median of one row against another manager's median of another row (supervisord
    has no memory guard: its plain idle CPU is the bar for pyvm2's guarded one)."""
    def check(b: Bench) -> tuple[str, bool | None]:
        mine, theirs = b.median(row, "pyvm2"), b.median(other_row, other)
        if mine is None:
            return b.why(row, "pyvm2"), None
        if theirs is None:
            return b.why(other_row, other), None
        if theirs == 0:
            return f"n/a ({other} measured 0)", None
        return f"{mine / theirs:.3f}x", mine / theirs <= limit

    return Target(row, text, check)


def every_burst_once(b: Bench) -> tuple[str, bool | None]:
    cell = b.cells.get("watch_restarts", {}).get("pyvm2")
    if cell is None or cell.na or not cell.values:
        return b.why("watch_restarts", "pyvm2"), None
    counts = [int(v) for v in cell.values]
    return ",".join(map(str, counts)), all(c == 1 for c in counts)


TARGETS: list[Target] = [
    ratio_target("list", "pm2", 0.5, "<=0.5x pm2 list"),
    ratio_target("list", "supervisord", 0.8, "<=0.8x supervisorctl status"),
    floor_target("jlist", "floor", 1.5, "<=1.5x the python3 -c pass floor"),
    ratio_target("rss_cold", "supervisord", 1.2, "<=1.2x supervisord"),
    abs_target("idle", 0.3, "<=0.3% of a core"),
    abs_target("idle_guard", 0.1, "<=0.1% of a core"),
    cross_target("idle_guard", "idle", "supervisord", 1.0, "<=supervisord's idle"),
    ratio_target("restart", "pm2", 1.0, "<=pm2"),
    abs_target("crash_cpu", 10.0, "<10% of a core"),
    ratio_target("start", "pm2", 1.5, "<=1.5x pm2"),
    ratio_target("cold", "supervisord", 0.8, "<=0.8x supervisord"),
    ratio_target("log_rate", "supervisord", 1.2, ">=1.2x supervisord", at_least=True),
    ratio_target("log_cpu_mb", "supervisord", 1 / 1.2, "<=supervisord/1.2 (0.833x)"),
    ratio_target("logd_rate", "pm2", 3.0, ">=3x pm2", at_least=True),
    ratio_target("watch", "pm2", 1.0, "<=pm2"),
    Target("watch_restarts", "exactly 1 every burst", every_burst_once),
    abs_target("memory", 1.5, "<=1.5 s"),
    abs_target("mem10", 1.5, "<=1.5 s"),
    abs_target("mem500", 1.5, "<=1.5 s"),
    abs_target("memcost_kept", 0, "no restart"),
    floor_target("scale_list", "list", 3.0, "<=3x the {list_apps}-app list"),
    abs_target("scale_rss", 60.0, "<=60 MiB"),
    ratio_target("scale_idle", "supervisord", 1.0, "<=supervisord"),
    floor_target("big_start", "scale_start", 5.5, "<=5.5x the {scale_apps}-app time"),
    abs_target("big_list", 0.5, "<=0.5 s"),
    abs_target("big_rss", 150.0, "<=150 MiB"),
    abs_target("big_fds_app", 3.0, "<=3 per app"),
    abs_target("big_stop", 10.0, "<=10 s"),
    abs_target("monit_idle", 5.0, "<5% of a core"),
]


# ---- the benchmark ------------------------------------------------------------------------------

class Bench:
    def __init__(self, size: str, wanted: list[str], keep: bool) -> None:
        self.size_name = size
        self.size = SIZES[size]
        self.keep = keep
        self.tag = uuid.uuid4().hex
        self.origin = os.getcwd()
        self.root = Path(tempfile.mkdtemp(prefix="pyvm2-bench-"))
        self.work = self.root / "work"
        self.work.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYVM2_HOME", "PM2_HOME", "SUPERVISOR_SERVER_URL")}
        # a command that forgot its manager's env must not reach the user's real homes
        self.env.update({"PYVM2_HOME": str(self.root / "stray-pyvm2"),
                         "PM2_HOME": str(self.root / "stray-pm2")})
        self.env.update({TAG_VAR: self.tag, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1",
                         "FORCE_COLOR": "0", "COLUMNS": "200", "PM2_DISABLE_VERSION_CHECK": "true"})
        self.reaper = Reaper(self.tag)
        self.seq = 0
        self.cells: dict[str, dict[str, Cell]] = {}
        self.notes: list[str] = []
        self.missing: dict[str, str] = {}
        self.managers: list[Manager] = []
        self.versions: dict[str, str] = {}
        self.digest_start: str | None = None
        self.fds0: dict[str, int] = {}      # daemon descriptors with no app, per manager
        self.phases: set[str] | None = None  # None: every phase
        self._cleaned = False
        for key in wanted:
            m = MANAGER_CLASSES[key](self)
            why = m.check()
            if why:
                self.missing[key] = why
            else:
                self.managers.append(m)
        self.columns = [k for k in MANAGERS if k in wanted]

    # ---- recording ------------------------------------------------------------------------
    def put(self, row: str, mgr: str, value: float) -> None:
        self.cells.setdefault(row, {}).setdefault(mgr, Cell()).values.append(value)

    def na(self, row: str, mgr: str, reason: str) -> None:
        cell = self.cells.setdefault(row, {}).setdefault(mgr, Cell())
        if cell.na is None:
            cell.na = reason

    def median(self, row: str, mgr: str) -> float | None:
        cell = self.cells.get(row, {}).get(mgr)
        return cell.median if cell else None

    def why(self, row: str, mgr: str) -> str:
        if mgr == SHARED:
            cell = self.cells.get(row, {}).get(mgr)
            return f"n/a ({cell.na})" if cell and cell.na else "n/a (floor not measured)"
        if mgr in self.missing:
            return f"n/a ({mgr}: {self.missing[mgr]})"
        cell = self.cells.get(row, {}).get(mgr)
        if cell and cell.na:
            return f"n/a ({mgr}: {cell.na})"
        return f"n/a ({mgr} not measured)"

    def phase(self, name: str, rows: list[str], m: Manager, fn: Callable[[], None],
              cleanup: bool = True) -> None:
        """Run one manager's part of a phase; a failure becomes n/a in its rows, not a crash."""
        if m.broken:
            for r in rows:
                self.na(r, m.key, f"{m.key} failed earlier")
            return
        t = time.monotonic()
        self.log(f"{name}: {m.key} ...")
        try:
            fn()
        except BenchError as e:
            self.log(f"{name}: {m.key} failed: {e}")
            for r in rows:
                self.na(r, m.key, str(e))
        except Exception as e:
            self.log(f"{name}: {m.key} crashed: {e!r}\n{traceback.format_exc()}")
            for r in rows:
                self.na(r, m.key, f"bench error {type(e).__name__}: {e}"[:120])
        finally:
            if cleanup:
                try:
                    m.delete_all(self.delete_timeout())
                except BenchError as e:
                    self.log(f"{name}: {m.key} delete all failed: {e}")
                    m.broken = f"delete failed: {e}"
            self.log(f"{name}: {m.key} done in {time.monotonic() - t:.1f}s")

    def delete_timeout(self) -> float:
        return 600.0 if self.size_name == "full" else 60.0

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def app(self, name: str, mode: str, *args: str, cwd: Path | None = None, **kw) -> App:
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        return App(name=name, argv=[PY, str(CHILD), mode, *args], cwd=str(cwd or self.work),
                   out=str(logs / f"{name}-out.log"), err=str(logs / f"{name}-err.log"), **kw)

    def sleepers(self, m: Manager, phase: str, n: int, **kw) -> tuple[list[App], Path]:
        markers = self.work / f"markers-{phase}-{m.key}-{self.seq}"
        shutil.rmtree(markers, ignore_errors=True)
        markers.mkdir()
        apps = [self.app(f"{phase}{i:04d}", "sleep", "--marker", str(markers / f"{i:04d}"), **kw)
                for i in range(n)]
        return apps, markers

    def shell_sleepers(self, m: Manager, phase: str, prefix: str, n: int,
                       width: int) -> tuple[list[App], Path]:
        """n idle `sleeper.sh` apps (the cheapest process there is, for the scale phases), each
        with its own log files and a marker written once it runs."""
        markers = self.work / f"markers-{phase}-{m.key}"
        shutil.rmtree(markers, ignore_errors=True)
        markers.mkdir()
        logs = self.work / f"{phase}-logs-{m.key}"
        logs.mkdir(exist_ok=True)
        apps = [App(name=f"{prefix}{i:0{width}d}", argv=[SH, str(SLEEPER), str(markers / f"{i:0{width}d}")],
                    cwd=str(self.work), out=str(logs / f"{prefix}{i:0{width}d}-out.log"),
                    err=str(logs / f"{prefix}{i:0{width}d}-err.log")) for i in range(n)]
        return apps, markers

    # ---- phases -----------------------------------------------------------------------------
    def boot_all(self) -> None:
        for m in self.managers:
            def go(m=m) -> None:
                m.boot()
                self.versions[m.key] = m.version()
                if m.key == "pyvm2" and getattr(m, "source", None):
                    self.digest_start = source_digest(m.source)
                    self.versions[m.key] += f" source {self.digest_start}"
                time.sleep(2)
                self.put("rss0", m.key, rss_mib(m.daemon_pid()) or 0)
                self.fds0[m.key] = fd_count(m.daemon_pid()) or 0
            self.phase("boot", ["rss0"], m, go, cleanup=False)
            if "rss0" in self.cells and self.cells["rss0"].get(m.key, Cell()).na:
                m.broken = self.cells["rss0"][m.key].na

    def phase_list(self) -> None:
        n, reps = self.size["list_apps"], self.size["list_reps"]
        floor = [PY, "-c", "pass"]
        rows = ["list", "jlist", "list_m", "jlist_m", "rss_list"]
        cmds: list[tuple[str, str, list[str], dict[str, str]]] = [("floor", SHARED, floor, self.env)]
        ready: list[Manager] = []
        for m in self.managers:
            def go(m=m) -> None:
                apps, markers = self.sleepers(m, "l", n)
                m.start(apps, 120)
                wait_for(lambda: count_markers(markers) >= n, 60, f"{n} apps online")
                ready.append(m)
            self.phase("list: start", rows, m, go, cleanup=False)
        for m in ready:
            for row, argv in m.list_cmds().items():
                cmds.append((row, m.key, argv, m.env))
        time.sleep(2)
        for m in ready:
            self.put("rss_list", m.key, rss_mib(m.daemon_pid()) or 0)
        # one warm-up each (page cache), then rounds in turn so that noise hits all alike
        failed: set[tuple[str, str]] = set()
        for rnd in range(reps + 1):
            for row, mgr, argv, env in cmds:
                if (row, mgr) in failed:
                    continue
                try:
                    ok = (0, 3) if mgr == "supervisord" else (0,)  # status exits 3 if one is down
                    dt = timed(argv, env, 60, ok_codes=ok)
                except BenchError as e:
                    failed.add((row, mgr))
                    self.na(row, mgr, str(e))
                    continue
                if rnd:
                    self.put(row, mgr, dt)
        for m in self.managers:
            for r in ("jlist",):
                if m.unsupported(r):
                    self.na(r, m.key, m.unsupported(r))
            if m.key != "pyvm2":
                for r in ("list_m", "jlist_m"):
                    self.na(r, m.key, "pyvm2 only")
        self.delete_everywhere()

    def delete_everywhere(self) -> None:
        """Every manager that still works deletes its apps; one that cannot is marked broken."""
        for m in self.managers:
            if m.broken:
                continue
            try:
                m.delete_all(self.delete_timeout())
            except BenchError as e:
                m.broken = f"delete failed: {e}"

    def phase_start(self) -> None:
        """One app at a time with the daemon up, the managers in turn each round so that the
        machine's noise hits all alike; each app is running before the next round."""
        for rep in range(self.size["start_reps"]):
            for m in self.managers:
                def go(m=m, rep=rep) -> None:
                    [app], markers = self.sleepers(m, f"st{rep}-", 1)
                    self.put("start", m.key, m.start_one(app, 60))
                    wait_for(lambda: count_markers(markers) >= 1, 60, "the app online")
                self.phase(f"start one {rep + 1}", ["start"], m, go, cleanup=False)
        self.delete_everywhere()

    def phase_cold_floor(self) -> None:
        n = self.size["cold_apps"]
        for _ in range(self.size["cold_reps"]):
            self.put("cold_floor", SHARED, self._direct_spawn(
                n, lambda marker: [PY, str(CHILD), "sleep", "--marker", marker]))

    def phase_scale_floor(self) -> None:
        n = self.size["scale_apps"]
        self.put("scale_floor", SHARED, self._direct_spawn(n, lambda marker: [SH, str(SLEEPER), marker]))

    def _direct_spawn(self, n: int, argv: Callable[[str], list[str]]) -> float:
        self.seq += 1
        markers = self.work / f"markers-floor-{self.seq}"
        markers.mkdir()
        procs: list[subprocess.Popen] = []
        t = time.time()
        try:
            for i in range(n):
                p = subprocess.Popen(argv(str(markers / f"{i:04d}")), env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
                procs.append(p)
                self.reaper.track(p.pid)
            return wait_for(lambda: last_marker(markers, n), 300, f"{n} direct children") - t
        finally:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass

    def phase_cold(self) -> None:
        n, reps = self.size["cold_apps"], self.size["cold_reps"]
        idle_s = self.size["idle_s"]
        rows = ["cold", "cold_cmd", "rss_cold", "idle", "idle_guard"]
        # rep 0: cold start, RSS and idle CPU; rep 1: the same apps with the memory guard on,
        # idle CPU again; further reps: cold start only
        for m in self.managers:
            no_guard = m.unsupported("memory_limit")
            if no_guard:
                self.na("idle_guard", m.key, no_guard)
            for rep in range(max(reps, 1 if no_guard else 2)):
                def go(m=m, rep=rep, guard=rep == 1 and not no_guard) -> None:
                    apps, markers = self.sleepers(m, "c", n,
                                                  memory_limit=GUARD_LIMIT if guard else None)
                    t0 = time.time()
                    cmd = m.start(apps, 300)
                    online = wait_for(lambda: last_marker(markers, n), 300, f"{n} apps online") - t0
                    if rep < reps:
                        self.put("cold", m.key, online)
                        self.put("cold_cmd", m.key, cmd)
                    if rep > 1 or (rep == 1 and not guard):
                        return
                    time.sleep(2)
                    pid = m.daemon_pid()
                    if rep == 0:
                        self.put("rss_cold", m.key, rss_mib(pid) or 0)
                    c0, w0 = cpu_seconds([pid]), time.monotonic()
                    time.sleep(idle_s)
                    c1, w1 = cpu_seconds([pid]), time.monotonic()
                    self.put("idle_guard" if guard else "idle", m.key, (c1 - c0) / (w1 - w0) * 100)

                self.phase(f"cold start {rep + 1}", rows, m, go)

    def phase_restart(self) -> None:
        reps, live, up = self.size["restart_reps"], self.size["live_s"], self.size["min_uptime_ms"]
        for m in self.managers:
            events = self.work / f"restart-{m.key}.events"

            def go(m=m, events=events) -> None:
                app = self.app("restart", "stable", "--events", str(events), "--live", str(live),
                               min_uptime_ms=up)
                m.start([app], 120)
                wait_for(lambda: sum(1 for e in read_events(events) if e[0] == "start") > reps,
                         (live + 5) * (reps + 1) + 10, f"{reps} restarts")
                ev = read_events(events)
                starts = sorted(e[2] for e in ev if e[0] == "start")
                for kind, _, t, _ in ev:
                    if kind == "exit":
                        nxt = [s for s in starts if s > t]
                        if nxt:
                            self.put("restart", m.key, (nxt[0] - t) * 1000)

            self.phase("restart latency", ["restart"], m, go)

    def phase_crash(self) -> None:
        window = self.size["crash_s"]
        for m in self.managers:
            events = self.work / f"crash-{m.key}.events"

            def go(m=m, events=events) -> None:
                pids = m.daemon_pids()
                if not pids:
                    raise BenchError("daemon not running")
                app = self.app("crash", "exit", "--events", str(events), max_restarts=1_000_000)
                c0, w0 = cpu_seconds(pids, with_children=True), time.monotonic()
                m.start([app], 120)
                time.sleep(max(0.0, window - (time.monotonic() - w0)))
                c1, w1 = cpu_seconds(pids, with_children=True), time.monotonic()
                self.put("crash_cpu", m.key, (c1 - c0) / (w1 - w0) * 100)
                self.put("crash_starts", m.key, sum(1 for e in read_events(events) if e[0] == "start"))

            self.phase("crash loop", ["crash_cpu", "crash_starts"], m, go)

    def phase_logs(self) -> None:
        nbytes = self.size["log_bytes"]
        for dated in (False, True) * self.size["log_reps"]:
            p = "logd_" if dated else "log_"
            rows = [p + s for s in ("wall", "rate", "cpu", "cpu_mb")]
            for m in self.managers:
                if dated and m.unsupported("date_format"):
                    for r in rows:
                        self.na(r, m.key, m.unsupported("date_format"))
                    continue
                self.seq += 1
                events = self.work / f"flood-{m.key}-{int(dated)}-{self.seq}.events"

                def go(m=m, events=events, dated=dated, p=p) -> None:
                    app = self.app(f"flood{int(dated)}", "flood", "--bytes", str(nbytes),
                                   "--events", str(events), no_rotation=True,
                                   date_format=DATE_FORMAT if dated else None)
                    for f in Path(app.out).parent.glob(Path(app.out).name + "*"):
                        f.unlink()
                    out = Path(app.out)
                    pid = m.daemon_pid()
                    c0 = cpu_seconds([pid])
                    starting = Background(lambda: m.start([app], 120))

                    def complete() -> float | None:
                        if starting.error is not None:
                            raise starting.error
                        files = [out] + sorted(out.parent.glob(out.name + ".*"))
                        size = 0
                        for f in files:
                            try:
                                size += f.stat().st_size
                            except OSError:
                                pass
                        if size < nbytes:
                            return None
                        try:
                            with open(out, "rb") as fh:
                                fh.seek(max(0, out.stat().st_size - 64))
                                if fh.read().endswith(b"FLOOD-END\n"):
                                    return time.time()
                        except OSError:
                            return None
                        return None

                    t_end = wait_for(complete, 600, "the whole flood in the log file", interval=0.005)
                    c1 = cpu_seconds([pid])
                    starting.join(120)
                    starts = [e for e in read_events(events) if e[0] == "start"]
                    if not starts:
                        raise BenchError("the flooder left no start event")
                    done = [e for e in read_events(events) if e[0] == "flood_done"]
                    written = nbytes
                    if done and "bytes=" in done[0][3]:
                        written = int(done[0][3].split("bytes=")[1].split()[0])
                    wall = t_end - starts[0][2]
                    cpu = c1 - c0
                    self.put(p + "wall", m.key, wall)
                    self.put(p + "rate", m.key, written / MB / wall)
                    self.put(p + "cpu", m.key, cpu)
                    self.put(p + "cpu_mb", m.key, cpu * 1000 / (written / MB))
                    lines = 0
                    for f in [out] + sorted(out.parent.glob(out.name + ".*")):
                        with open(f, "rb") as fh:
                            while chunk := fh.read(8 * MIB):
                                lines += chunk.count(b"\n")
                    expected = written // 100 + 2
                    if lines < expected:
                        self.notes.append(f"{m.key}: {'dated ' if dated else ''}log has {lines} lines, "
                                          f"expected {expected}: {expected - lines} lost")
                    for f in [out] + list(out.parent.glob(out.name + ".*")):
                        f.unlink()

                self.phase("logs dated" if dated else "logs", rows, m, go)

    def phase_watch(self) -> None:
        bursts = self.size["watch_bursts"]
        for m in self.managers:
            if m.unsupported("watch"):
                for r in ("watch", "watch_restarts"):
                    self.na(r, m.key, m.unsupported("watch"))
                continue
            wdir = self.work / f"watch-{m.key}"
            wdir.mkdir(exist_ok=True)
            target = wdir / "config.txt"
            target.write_text("0\n")
            events = self.work / f"watch-{m.key}.events"

            def go(m=m, wdir=wdir, target=target, events=events) -> None:
                app = self.app("watched", "sleep", "--events", str(events), cwd=wdir, watch=True)
                m.start([app], 120)
                wait_for(lambda: any(e[0] == "start" for e in read_events(events)), 30, "first start")
                time.sleep(self.size["watch_ready_s"])
                for b in range(bursts):
                    t0 = time.time()
                    for i in range(5):
                        target.write_text(f"{b} {i} {time.time()}\n")
                        time.sleep(0.02)

                    def new_start(t0=t0) -> float | None:
                        ts = [e[2] for e in read_events(events) if e[0] == "start" and e[2] > t0]
                        return min(ts) if ts else None

                    t1 = wait_for(new_start, 30, "a restart after the file change")
                    self.put("watch", m.key, (t1 - t0) * 1000)
                    time.sleep(self.size["watch_count_s"])
                    self.put("watch_restarts", m.key,
                             sum(1 for e in read_events(events) if e[0] == "start" and e[2] > t0))

            self.phase("watch", ["watch", "watch_restarts"], m, go)

    def phase_memory(self) -> None:
        reps, timeout = self.size["mem_reps"], self.size["mem_timeout_s"]
        for m in self.managers:
            if m.unsupported("memory_limit"):
                self.na("memory", m.key, m.unsupported("memory_limit"))
                continue
            events = self.work / f"memory-{m.key}.events"

            def go(m=m, events=events) -> None:
                app = self.app("grower", "grow", "--limit", str(MEMORY_LIMIT_BYTES),
                               "--events", str(events), "--step-mb", "10", "--interval", "0.1",
                               memory_limit=MEMORY_LIMIT)
                m.start([app], 120)
                seen: set[int] = set()
                for _ in range(reps):
                    def crossed() -> tuple[int, float] | None:
                        for e in read_events(events):
                            if e[0] == "crossed" and e[1] not in seen:
                                return e[1], e[2]
                        return None

                    pid, tc = wait_for(crossed, 60, "the child to cross the limit")
                    seen.add(pid)

                    def reacted(pid=pid, tc=tc) -> float | None:
                        for e in read_events(events):
                            if e[0] == "signal" and e[1] == pid:
                                return e[2]
                            if e[0] == "start" and e[1] != pid and e[2] > tc:
                                return e[2]
                        return None

                    try:
                        t1 = wait_for(reacted, timeout, "a restart after the limit was crossed",
                                      interval=0.005)
                    except BenchError:
                        raise BenchError(f"no restart within {timeout:.0f}s of crossing") from None
                    self.put("memory", m.key, t1 - tc)

            self.phase("memory limit", ["memory"], m, go)

    def _react(self, events: Path, seen: set[int], timeout: float) -> float:
        """Seconds from a child's own `crossed` event to its stop signal (or its successor's
        start), for a child not in seen."""
        def crossed() -> tuple[int, float] | None:
            for e in read_events(events):
                if e[0] == "crossed" and e[1] not in seen:
                    return e[1], e[2]
            return None

        pid, tc = wait_for(crossed, 120, "the child to cross the limit")
        seen.add(pid)

        def reacted() -> float | None:
            for e in read_events(events):
                if e[0] == "signal" and e[1] == pid:
                    return e[2]
                if e[0] == "start" and e[1] != pid and e[2] > tc:
                    return e[2]
            return None

        try:
            t1 = wait_for(reacted, timeout, "a restart after the limit was crossed", interval=0.005)
        except BenchError:
            raise BenchError(f"no restart within {timeout:.0f}s of crossing") from None
        return t1 - tc

    def phase_memory_rates(self) -> None:
        """An app idle long enough for a manager to read it rarely, then growing fast or slowly."""
        reps, timeout, wait = self.size["mem_reps"], self.size["mem_timeout_s"], self.size["mem_wait_s"]
        for rate, interval in GROWTH.items():
            row = f"mem{rate}"
            limit = self.size["mem_limits"][rate]
            limit_bytes = int(limit[:-1]) * MIB
            for m in self.managers:
                if m.unsupported("memory_limit"):
                    self.na(row, m.key, m.unsupported("memory_limit"))
                    continue
                events = self.work / f"{row}-{m.key}.events"

                def go(m=m, events=events, row=row, rate=rate, limit=limit,
                       limit_bytes=limit_bytes, interval=interval) -> None:
                    app = self.app(row, "grow", "--limit", str(limit_bytes), "--events", str(events),
                                   "--rate-mb", str(rate), "--interval", str(interval),
                                   "--wait", str(wait), memory_limit=limit)
                    m.start([app], 120)
                    seen: set[int] = set()
                    for _ in range(reps):
                        self.put(row, m.key, self._react(events, seen, timeout))

                self.phase(f"memory {rate} MB/s", [row], m, go)

    def phase_memory_cost(self) -> None:
        """The daemon's CPU for the memory measure of one pre-forked tree: a limit far above
        the tree's RSS sum, then one between its proportional size (PSS) and its RSS sum."""
        workers, window = self.size["cost_workers"], self.size["cost_idle_s"]
        rows = ["memcost_rss", "memcost_pss", "memcost_kept"]
        for m in self.managers:
            if m.unsupported("memory_limit"):
                for r in rows:
                    self.na(r, m.key, m.unsupported("memory_limit"))
                continue

            def go(m=m) -> None:
                pid = m.daemon_pid()
                # each worker's RSS holds the shared COST_MB: the RSS sum is about
                # workers * COST_MB, the PSS about COST_MB plus each worker's own pages
                high = f"{(workers + 1) * (COST_MB + 16) * 4}M"
                between = f"{(workers + 1) * COST_MB // 2}M"
                for row, limit in (("memcost_rss", high), ("memcost_pss", between)):
                    self.seq += 1
                    marker = self.work / f"prefork-{m.key}-{self.seq}"
                    events = self.work / f"prefork-{m.key}-{self.seq}.events"
                    app = self.app(f"tree{self.seq}", "prefork", "--workers", str(workers),
                                   "--mb", str(COST_MB), "--marker", str(marker),
                                   "--events", str(events), memory_limit=limit)
                    m.start([app], 120)
                    wait_for(lambda marker=marker: Path(str(marker) + ".ready").exists(), 60,
                             "the pre-forked tree")
                    time.sleep(2)
                    c0, w0 = cpu_seconds([pid]), time.monotonic()
                    time.sleep(window)
                    self.put(row, m.key, (cpu_seconds([pid]) - c0) / (time.monotonic() - w0) * 100)
                    if row == "memcost_pss":
                        self.put("memcost_kept", m.key,
                                 sum(1 for e in read_events(events) if e[0] == "start") - 1)
                    m.delete_all(self.delete_timeout())

            self.phase("memory measure cost", rows, m, go)

    def phase_big(self) -> None:
        """Thousands of idle apps: start, list, RSS, descriptors, idle CPU, stop all, each
        manager within a bounded time."""
        n, budget = self.size["big_apps"], self.size["big_timeout_s"]
        rows = ["big_start", "big_list", "big_rss", "big_fds_app", "big_idle", "big_stop"]
        self.put("big_floor", SHARED, self._direct_spawn(n, lambda marker: [SH, str(SLEEPER), marker]))
        for m in self.managers:
            if m.key != "pyvm2" and not self.size["scale_all_managers"]:
                for r in rows:
                    self.na(r, m.key, "--size full only")
                continue

            def go(m=m) -> None:
                apps, markers = self.shell_sleepers(m, "big", "b", n, 5)
                t0 = time.time()
                starting = Background(lambda: m.start(apps, budget))
                try:
                    done_at = wait_for(lambda: last_marker(markers, n), budget,
                                       f"{n} apps online", interval=0.2)
                except BenchError:
                    raise BenchError(f"not all {n} online within {budget:.0f}s "
                                     f"({count_markers(markers)} were)") from None
                self.put("big_start", m.key, done_at - t0)
                starting.join(budget)
                time.sleep(3)
                pid = m.daemon_pid()
                self.put("big_rss", m.key, rss_mib(pid) or 0)
                c0, w0 = cpu_seconds([pid]), time.monotonic()
                time.sleep(self.size["scale_idle_s"])
                self.put("big_idle", m.key, (cpu_seconds([pid]) - c0) / (time.monotonic() - w0) * 100)
                # once idle (after the CPU window): what an app holds while it runs quietly
                self.put("big_fds_app", m.key, ((fd_count(pid) or 0) - self.fds0.get(m.key, 0)) / n)
                argv = m.list_cmds()["list"]
                ok = (0, 3) if m.key == "supervisord" else (0,)
                timed(argv, m.env, budget, ok_codes=ok)
                for _ in range(3):
                    self.put("big_list", m.key, timed(argv, m.env, budget, ok_codes=ok))
                t0 = time.perf_counter()
                m.stop_all(budget)
                self.put("big_stop", m.key, time.perf_counter() - t0)

            self.phase("5000 apps" if n == 5000 else f"{n} apps", rows, m, go)

    def phase_scale(self) -> None:
        n = self.size["scale_apps"]
        rows = ["scale_start", "scale_list", "scale_rss", "scale_fds", "scale_idle", "scale_delete"]
        for m in self.managers:
            if m.key != "pyvm2" and not self.size["scale_all_managers"]:
                for r in rows:
                    self.na(r, m.key, "--size full only")
                continue
            done = {"deleted": False}

            def go(m=m, done=done) -> None:
                self.seq += 1
                apps, markers = self.shell_sleepers(m, "scale", "s", n, 4)
                t0 = time.time()
                m.start(apps, 900)
                done_at = wait_for(lambda: last_marker(markers, n), 900, f"{n} apps online",
                                   interval=0.05)
                self.put("scale_start", m.key, done_at - t0)
                time.sleep(3)
                pid = m.daemon_pid()
                self.put("scale_rss", m.key, rss_mib(pid) or 0)
                fds = fd_count(pid) or 0
                self.put("scale_fds", m.key, fds)
                self.put("scale_fds_app", m.key, (fds - self.fds0.get(m.key, 0)) / n)
                c0, w0 = cpu_seconds([pid]), time.monotonic()
                time.sleep(self.size["scale_idle_s"])
                self.put("scale_idle", m.key, (cpu_seconds([pid]) - c0) / (time.monotonic() - w0) * 100)
                argv = m.list_cmds()["list"]
                ok = (0, 3) if m.key == "supervisord" else (0,)
                timed(argv, m.env, 120, ok_codes=ok)
                for _ in range(self.size["scale_list_reps"]):
                    self.put("scale_list", m.key, timed(argv, m.env, 120, ok_codes=ok))
                t0 = time.perf_counter()
                m.delete_all(self.delete_timeout() + 300)
                self.put("scale_delete", m.key, time.perf_counter() - t0)
                done["deleted"] = True

            self.phase("scale", rows, m, go, cleanup=False)
            if not done["deleted"]:
                try:
                    m.delete_all(self.delete_timeout() + 300)
                except BenchError as e:
                    m.broken = f"delete failed: {e}"

    def phase_monit(self) -> None:
        """pyvm2 monit in a pseudo-terminal, left alone: what its refresh loop costs."""
        window = self.size["monit_s"]
        for m in self.managers:
            if m.key != "pyvm2":
                self.na("monit_idle", m.key, "pyvm2 monit only")
                continue

            def go(m: Manager = m) -> None:
                apps, markers = self.sleepers(m, "mon", 3)
                m.start(apps, 120)
                wait_for(lambda: last_marker(markers, 3), 60, "3 apps online")
                master, slave = pty.openpty()
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                env = {**m.env, "TERM": "xterm-256color"}
                proc = subprocess.Popen(m.cli + ["monit"], stdin=slave, stdout=slave, stderr=slave,
                                        env=env, cwd=neutral_cwd(), start_new_session=True)
                os.close(slave)
                self.reaper.track(proc.pid)
                drain = Background(lambda: _drain_pty(master))
                try:
                    time.sleep(2)  # the first frames are drawn
                    if proc.poll() is not None:
                        raise BenchError(f"monit exited with {proc.returncode}")
                    c0, w0 = cpu_seconds([proc.pid]), time.monotonic()
                    time.sleep(window)
                    c1, w1 = cpu_seconds([proc.pid]), time.monotonic()
                    self.put("monit_idle", m.key, (c1 - c0) / (w1 - w0) * 100)
                finally:
                    try:
                        os.write(master, b"q")
                        proc.wait(timeout=10)
                    except (OSError, subprocess.TimeoutExpired):
                        proc.kill()
                        proc.wait()
                    drain.thread.join(5)  # the terminal closed with monit: the reader ends
                    os.close(master)

            self.phase("monit idle", ["monit_idle"], m, go)

    # ---- the whole run ----------------------------------------------------------------------
    def measure(self) -> None:
        for key, why in self.missing.items():
            self.log(f"{key}: not measured: {why}")
        self.boot_all()
        for name, fns in PHASES.items():
            if self.phases is None or name in self.phases:
                for fn in fns:
                    fn(self)
        py = next((m for m in self.managers if m.key == "pyvm2"), None)
        if py is not None and getattr(py, "source", None) and self.digest_start:
            if source_digest(py.source) != self.digest_start:
                self.notes.append("pyvm2's source changed while the bench ran: "
                                  "its rows mix two versions")

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        for m in self.managers:
            try:
                m.shutdown()
            except Exception as e:
                self.log(f"{m.key}: shutdown failed ({e}); killing by pid")
        left = self.reaper.reap()
        if left:
            self.log(f"stopped {len(left)} leftover process(es) by pid: " + "; ".join(left)[:500])
        if not self.keep:
            if Path.cwd() == self.root:
                os.chdir(self.origin)
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            self.log(f"kept {self.root}")

    # ---- output -------------------------------------------------------------------------------
    def fmt_cell(self, row: Row, mgr: str) -> str:
        if row.shared:
            if mgr != self.columns[0]:
                return "-"
            mgr = SHARED
        if mgr in self.missing:
            return "n/a (not installed)"
        cell = self.cells.get(row.key, {}).get(mgr)
        if cell is None:
            return "n/a"
        if cell.na:
            return self.na_text(cell.na)
        if not cell.values:
            return "n/a"
        return f"{statistics.median(cell.values):.{row.digits}f} ({len(cell.values)})"

    def na_text(self, reason: str) -> str:
        """Short reasons stay in the cell; long ones become a numbered note under the table."""
        if len(reason) <= 28:
            return f"n/a ({reason})"
        if reason not in self.footnotes:
            self.footnotes.append(reason)
        return f"n/a [{self.footnotes.index(reason) + 1}]"

    def ratio(self, row: Row, other: str) -> str:
        if row.shared:
            return ""
        a, b = self.median(row.key, "pyvm2"), self.median(row.key, other)
        if a is None or b is None or b == 0:
            return "n/a"
        return f"{a / b:.2f}"

    def table(self) -> str:
        sub = dict(self.size)
        sub["log_mb"] = f"{self.size['log_bytes'] / MB:g}"
        header = ["measurement", "unit"] + self.columns
        if "pyvm2" in self.columns:
            header += [f"pyvm2/{o}" for o in self.columns if o != "pyvm2"]
        header += ["target", "value", "met"]
        targets_by_row: dict[str, list[Target]] = {}
        for t in TARGETS:
            targets_by_row.setdefault(t.row, []).append(t)
        lines: list[list[str]] = []
        self.verdicts: list[dict] = []
        for row in ROWS:
            base = [row.label.format(**sub), row.unit] + [self.fmt_cell(row, m) for m in self.columns]
            if "pyvm2" in self.columns:
                base += [self.ratio(row, o) for o in self.columns if o != "pyvm2"]
            ts = targets_by_row.get(row.key) or [None]
            for i, t in enumerate(ts):
                cells = base if i == 0 else [""] * len(base)
                if t is None:
                    lines.append(cells + ["", "", ""])
                    continue
                shown, met = t.check(self)
                verdict = "met" if met else ("NOT met" if met is False else self.na_text(shown[5:-1]))
                text = t.text.format(**sub)
                lines.append(cells + [text, shown if met is not None else "", verdict])
                self.verdicts.append({"row": row.key, "target": text, "value": shown, "verdict": verdict})
        widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(header)]
        out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
               "-+-".join("-" * w for w in widths)]
        for r in lines:
            out.append(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return "\n".join(out)

    def machine(self) -> dict[str, str]:
        model = "?"
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = "?"
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        except OSError:
            pass
        info = {"cpus": str(os.cpu_count()), "cpu": model, "memory": mem,
                "kernel": platform.release(), "python": platform.python_version() + f" ({PY})"}
        for k in MANAGERS:
            if k in self.versions:
                info[k] = self.versions[k]
            elif k in self.missing:
                info[k] = f"not measured: {self.missing[k]}"
        return info

    def report(self, elapsed: float) -> str:
        self.footnotes: list[str] = []
        table = self.table()
        lines = [f"pyvm2 benchmark, size {self.size_name}, {elapsed:.0f} s",
                 "machine: " + "; ".join(f"{k} {v}" for k, v in self.machine().items()), "",
                 table, "",
                 "cells: median (N); ratios are pyvm2's median over the other's; "
                 "targets are issues 5 and 15's, checked on medians."]
        for i, reason in enumerate(self.footnotes, 1):
            lines.append(f"[{i}] {reason}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def to_json(self, elapsed: float) -> dict:
        return {
            "size": self.size_name, "elapsed_s": elapsed, "machine": self.machine(),
            "rows": {r.key: {"label": r.label, "unit": r.unit, "cells": {
                m: {"values": c.values, "median": c.median, "na": c.na}
                for m, c in self.cells.get(r.key, {}).items()}} for r in ROWS},
            "targets": getattr(self, "verdicts", []), "notes": self.notes,
            "missing": self.missing,
        }


#: --phases names -> what each runs, in this order
PHASES: dict[str, list[Callable[[Bench], None]]] = {
    "list": [Bench.phase_list],
    "start": [Bench.phase_start],
    "cold": [Bench.phase_cold_floor, Bench.phase_cold],
    "restart": [Bench.phase_restart],
    "crash": [Bench.phase_crash],
    "logs": [Bench.phase_logs],
    "watch": [Bench.phase_watch],
    "memory": [Bench.phase_memory, Bench.phase_memory_rates],
    "memcost": [Bench.phase_memory_cost],
    "scale": [Bench.phase_scale_floor, Bench.phase_scale],
    "big": [Bench.phase_big],
    "monit": [Bench.phase_monit],
    "reload": [lambda b: phase_reload(b, run, wait_for)],
    "web": [phase_web],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pyvm2 vs pm2 vs supervisord, side by side.")
    ap.add_argument("--size", choices=sorted(SIZES), default="smoke")
    ap.add_argument("--managers", default=",".join(MANAGERS),
                    help="comma separated, from: " + ", ".join(MANAGERS))
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes and logs")
    ap.add_argument("--phases", help="comma separated, from: " + ", ".join(PHASES) +
                    " (default: all; the big-app targets compare with the scale phase)")
    args = ap.parse_args(argv)
    wanted = [m.strip() for m in args.managers.split(",") if m.strip()]
    bad = [m for m in wanted if m not in MANAGERS]
    if bad or not wanted:
        ap.error(f"unknown manager(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MANAGERS)}")

    phases = None
    if args.phases:
        phases = {p.strip() for p in args.phases.split(",") if p.strip()}
        if not phases or phases - set(PHASES):
            ap.error(f"unknown phase(s) {', '.join(sorted(phases - set(PHASES))) or '(none)'}; "
                     f"choose from {', '.join(PHASES)}")
    json_path = Path(args.json).absolute() if args.json else None
    bench = Bench(args.size, wanted, args.keep)
    bench.phases = phases
    atexit.register(bench.cleanup)
    # run everything from the private folder: `python -c`/`-m` put the current folder first on
    # sys.path, and a source checkout there would shadow the installed pyvm2
    os.chdir(neutral_cwd())

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and `kill -INT` should still work
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    t0 = time.monotonic()
    interrupted = False
    try:
        bench.measure()
    except KeyboardInterrupt:
        interrupted = True
        bench.log("interrupted; stopping everything and printing what was measured")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        bench.cleanup()
    elapsed = time.monotonic() - t0
    print(bench.report(elapsed), flush=True)
    if json_path:
        json_path.write_text(json.dumps(bench.to_json(elapsed), indent=1))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
