"""Benchmark of `pyvm2 web` with many apps: GET /api/apps and /metrics, how soon a crash reaches
an event stream, the web server's memory and idle cpu, and (with --browser) the page's first
paint and full table in headless Chromium.

    python3 bench/web.py                 # 1000 apps
    python3 bench/web.py --apps 100 --browser
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[bench-web {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def idle_cpu(pid: int, seconds: float) -> float:
    hz = os.sysconf("SC_CLK_TCK")
    a = cpu_ticks(pid)
    time.sleep(seconds)
    return (cpu_ticks(pid) - a) / hz / seconds * 100


class Run:
    """One pyvm2 home with `apps` sleepers and `pyvm2 web`: a home of its own, or (for run.py's
    web phase) the bench's pyvm2 home and environment, which the bench cleans up."""

    def __init__(self, apps: int, keep: bool, home: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.own = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="pyvm2-bench-web-"))
        self.keep = keep
        self.n = apps
        self.env = dict(env or os.environ, PYVM2_HOME=str(self.home), NO_COLOR="1")
        self.port = free_port()
        self.token = ""

    def cli(self, *args: str, timeout: float = 600) -> str:
        r = subprocess.run([sys.executable, "-m", "pyvm2", *args], env=self.env, cwd="/",
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise SystemExit(f"pyvm2 {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def request(self, path: str, method: str = "GET") -> tuple[float, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        t = time.perf_counter()
        conn.request(method, path, headers={"Authorization": f"Bearer {self.token}"})
        body = conn.getresponse().read()
        elapsed = time.perf_counter() - t
        conn.close()
        return elapsed, body

    def setup(self) -> None:
        markers = self.home / "web-markers"
        shutil.rmtree(markers, ignore_errors=True)
        markers.mkdir()
        apps = [{"name": f"s{i}", "script": str(HERE / "sleeper.sh"), "interpreter": "sh",
                 "args": [str(markers / str(i))], "autorestart": True} for i in range(self.n)]
        eco = self.home / "eco.json"
        eco.write_text(json.dumps({"apps": apps}))
        log(f"starting {self.n} apps")
        self.cli("start", str(eco))
        log("starting pyvm2 web")
        url = self.cli("web", "--port", str(self.port)).strip().splitlines()[-1]
        self.url = url
        self.token = (self.home / "web.token").read_text().strip()
        self.apps = json.loads(self.request("/api/apps")[1])
        self.web_pid = next(a["pid"] for a in self.apps if a["name"] == "pyvm2-web")
        self.daemon_pid = int((self.home / "pyvm2.pid").read_text())

    def event_latency(self, samples: int) -> list[float]:
        """kill -9 an app; time until its state change arrives on an event stream."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {self.token}"})
        resp = conn.getresponse()
        arrived: dict[int, float] = {}
        ready = threading.Event()

        def reader() -> None:
            kind = ""
            while True:
                try:
                    line = resp.fp.readline()
                except (AttributeError, OSError, ValueError):
                    return  # closed
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "daemon":
                    ready.set()
                elif line.startswith("data: ") and kind == "state":
                    app = json.loads(line[6:])["app"]
                    if app["pm2_env"]["status"] != "online":
                        arrived.setdefault(app["pm_id"], time.perf_counter())

        threading.Thread(target=reader, daemon=True).start()
        ready.wait(60)
        out = []
        victims = [a for a in self.apps if a["name"] != "pyvm2-web"][:samples]
        for a in victims:
            t = time.perf_counter()
            os.kill(a["pid"], signal.SIGKILL)
            deadline = t + 10
            while a["pm_id"] not in arrived and time.perf_counter() < deadline:
                time.sleep(0.001)
            if a["pm_id"] in arrived:
                out.append(arrived[a["pm_id"]] - t)
            time.sleep(0.2)
        conn.close()
        return out

    def browser(self) -> tuple[float, float] | None:
        chromium, driver_path = "/usr/bin/chromium", "/usr/bin/chromedriver"
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            log("selenium is not installed: no browser numbers")
            return None
        if not (os.access(chromium, os.X_OK) and os.access(driver_path, os.X_OK)):
            log("no chromium/chromedriver: no browser numbers")
            return None
        profile = tempfile.mkdtemp(prefix="pyvm2-bench-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        d = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            d.get(self.url)  # sets the session cookie
            t = time.perf_counter()
            d.get(f"http://localhost:{self.port}/")
            while d.execute_script("return document.querySelectorAll('#apps tbody tr').length") \
                    < len(self.apps) and time.perf_counter() - t < 120:
                time.sleep(0.02)
            full = time.perf_counter() - t
            paint = d.execute_script(
                "const p = performance.getEntriesByName('first-contentful-paint')[0];"
                "return p ? p.startTime : null")
            return (paint or 0) / 1000, full
        finally:
            d.quit()
            shutil.rmtree(profile, ignore_errors=True)

    def close(self) -> None:
        if not self.own:
            return
        try:
            subprocess.run([sys.executable, "-m", "pyvm2", "kill"], env=self.env, cwd="/",
                           capture_output=True, timeout=600)
        finally:
            if not self.keep:
                shutil.rmtree(self.home, ignore_errors=True)


def measure(run: Run, browser: bool, idle_s: float = 10.0) -> dict[str, list[float]]:
    """Every measurement of a set-up Run: key -> samples (keys as run.py's web rows)."""
    out: dict[str, list[float]] = {}
    run.request("/api/apps")
    lists = [run.request("/api/apps") for _ in range(10)]
    out["web_api"] = [t for t, _ in lists]
    out["web_api_kib"] = [len(lists[0][1]) / 1024]
    out["web_metrics"] = [run.request("/metrics")[0] for _ in range(5)]
    lat = run.event_latency(10)
    if lat:
        out["web_event"] = lat
    time.sleep(2)
    out["web_rss"] = [rss_mib(run.web_pid)]
    log(f"measuring idle cpu ({idle_s:.0f} s)")
    out["web_idle"] = [idle_cpu(run.web_pid, idle_s)]
    out["web_daemon_idle"] = [idle_cpu(run.daemon_pid, idle_s)]
    if browser:
        got = run.browser()
        if got:
            out["web_paint"], out["web_table"] = [got[0]], [got[1]]
    return out


def phase_web(b: Any) -> None:
    """run.py's web phase (pyvm2 only): its `scale_apps` sleepers in the bench's pyvm2 home, then
    `pyvm2 web`; the page's rows when Chromium and Selenium are there."""
    rows = ["web_api", "web_metrics", "web_event", "web_rss", "web_idle", "web_daemon_idle",
            "web_paint", "web_table"]
    for m in b.managers:
        if m.key != "pyvm2":
            for r in rows:
                b.na(r, m.key, "pyvm2 only")
            continue

        def go(m: Any = m) -> None:
            run = Run(b.size["scale_apps"], True, home=m.root, env=m.env)
            try:
                run.setup()
            except SystemExit as e:   # a failed command, as the standalone run reports it
                raise RuntimeError(str(e).splitlines()[0]) from None
            got = measure(run, True, b.size["scale_idle_s"])
            for key, values in got.items():
                if key in rows:
                    for v in values:
                        b.put(key, m.key, v)
            for r in ("web_paint", "web_table"):
                if r not in got:
                    b.na(r, m.key, "no chromium/chromedriver/selenium")
            if "web_event" not in got:
                b.na("web_event", m.key, "no state event within 10 s")

        b.phase(f"web, {b.size['scale_apps']} apps", rows, m, go)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--browser", action="store_true", help="also measure the page in Chromium")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    run = Run(args.apps, args.keep)
    rows: list[tuple[str, str, str]] = []
    try:
        run.setup()
        got = measure(run, args.browser)
    finally:
        run.close()
    med = {k: statistics.median(v) for k, v in got.items()}
    rows.append((f"GET /api/apps, {args.apps} apps ({med['web_api_kib']:.0f} KiB)", "s",
                 f"{med['web_api']:.3f}"))
    rows.append((f"GET /metrics, {args.apps} apps", "s", f"{med['web_metrics']:.3f}"))
    if "web_event" in got:
        rows.append(("kill -9 -> state event on /api/events (median)", "s",
                     f"{med['web_event']:.3f}"))
        rows.append(("kill -9 -> state event on /api/events (max)", "s",
                     f"{max(got['web_event']):.3f}"))
    rows.append(("web server RSS", "MiB", f"{med['web_rss']:.1f}"))
    rows.append(("web server idle cpu, no browser", "% of a core", f"{med['web_idle']:.2f}"))
    rows.append(("daemon idle cpu, web on", "% of a core", f"{med['web_daemon_idle']:.2f}"))
    if "web_paint" in got:
        rows.append(("page: first contentful paint", "s", f"{med['web_paint']:.3f}"))
        rows.append((f"page: table with all {len(run.apps)} rows", "s", f"{med['web_table']:.3f}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}} | unit        | value")
    print("-" * width + "-+-------------+------")
    for name, unit, value in rows:
        print(f"{name:<{width}} | {unit:<11} | {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
