"""The reload rows of the benchmark: requests that fail while an HTTP app (examples/web.py) with 1
and with 2 instances is reloaded 3 times under a constant load from loopback.

pyvm2 holds the socket (`listen`) and waits for READY=1 (`wait_ready`) before it stops an old
process; pm2 runs the app in fork mode, binding its own port, and reloads it with `pm2 reload`;
supervisord restarts each copy in turn (`supervisorctl restart`). With 2 instances the copies that
bind for themselves share the port with SO_REUSEPORT.
"""

from __future__ import annotations

import http.client
import json
import shlex
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

Run = Callable[..., Any]

WEB = Path(__file__).resolve().parent.parent / "examples" / "web.py"
RELOADS = 3
CLIENTS = 4
#: Load keeps running this long after each reload command returns, to catch late failures.
SETTLE_S = 1.0


class Load:
    """CLIENTS threads sending GETs to 127.0.0.1:port, one connection per request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/")
                resp = conn.getresponse()
                good = resp.status == 200 and resp.read().startswith(b"hello")
                conn.close()
                what = "ok" if good else f"HTTP {resp.status}"
            except (OSError, http.client.HTTPException) as e:
                what = type(e).__name__
            with self.lock:
                if what == "ok":
                    self.ok += 1
                else:
                    self.failures[what] += 1
            self.stop.wait(0.002)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def _setup(b: Any, m: Any, n: int, port: int, run: Run) -> list[list[str]]:
    """Start the app under manager m; return the commands that make one reload."""
    env = {"PORT": str(port), "WEB_LOG_REQUESTS": "0", "WEB_REUSE_PORT": "1"}
    logs = b.work / "logs"
    logs.mkdir(exist_ok=True)
    if m.key in ("pyvm2", "pm2"):
        app: dict[str, Any] = {
            "name": "web", "script": str(WEB), "interpreter": sys.executable, "instances": n,
            "exec_mode": "fork", "env": env, "cwd": str(b.work),
            "out_file": str(logs / "web-out.log"), "error_file": str(logs / "web-err.log"),
        }
        if m.key == "pyvm2":
            app.update(listen=f"127.0.0.1:{port}", wait_ready=True, kill_signal="SIGTERM")
        path = b.work / f"reload-{m.key}.json"
        path.write_text(json.dumps({"apps": [app]}))
        run(m.cli + ["start", str(path)], m.env, 120)
        return [m.cli + ["reload", "web"]]
    # supervisord: one program per copy, restarted one after the other
    sections = []
    for i in range(n):
        environment = ",".join(f'{k}="{v}"' for k, v in env.items())
        sections.append("\n".join([
            f"[program:web{i}]",
            f"command={shlex.join([sys.executable, str(WEB)])}", f"directory={b.work}",
            f"environment={environment}", "autostart=true", "autorestart=true", "startsecs=1",
            "stopsignal=TERM", "stopwaitsecs=5", "stopasgroup=true", "killasgroup=true",
            f"stdout_logfile={logs}/web{i}-out.log", f"stderr_logfile={logs}/web{i}-err.log",
            "stdout_logfile_maxbytes=0", "stderr_logfile_maxbytes=0", ""]))
    (m.programs / "apps.conf").write_text("\n".join(sections))
    run(m.ctl("update"), m.env, 120)
    return [m.ctl("restart", f"web{i}") for i in range(n)]


def phase_reload(b: Any, run: Run, wait_for: Run) -> None:
    """Rows reload_fail_1 and reload_fail_2 (requests failed), for every manager. `run` and
    `wait_for` are run.py's."""
    for n in (1, 2):
        row = f"reload_fail_{n}"
        for m in b.managers:
            def go(m: Any = m, n: int = n, row: str = row) -> None:
                port = _free_port()
                commands = _setup(b, m, n, port, run)
                wait_for(lambda: _answers(port), 60, "the web app to answer")
                time.sleep(1.0)  # every copy up
                load = Load(port)
                load.start()
                try:
                    wait_for(lambda: load.ok >= 20, 60, "the load to get answers")
                    for _ in range(RELOADS):
                        for argv in commands:
                            run(argv, m.env, 120)
                        time.sleep(SETTLE_S)
                finally:
                    load.finish()
                failed = sum(load.failures.values())
                b.put(row, m.key, failed)
                kinds = ", ".join(f"{k} {v}" for k, v in load.failures.most_common())
                b.notes.append(f"{m.key}, {n} instance(s): {failed} of {failed + load.ok} "
                               f"requests failed during {RELOADS} reloads"
                               + (f" ({kinds})" if kinds else ""))

            b.phase(f"reload x{RELOADS}, {n} instance(s)", [row], m, go)

