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
    def __init__(self, apps: int, keep: bool) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pyvm2-bench-web-"))
        self.keep = keep
        self.n = apps
        self.env = dict(os.environ, PYVM2_HOME=str(self.home), NO_COLOR="1")
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
        markers = self.home / "markers"
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
        try:
            subprocess.run([sys.executable, "-m", "pyvm2", "kill"], env=self.env, cwd="/",
                           capture_output=True, timeout=600)
        finally:
            if not self.keep:
                shutil.rmtree(self.home, ignore_errors=True)


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
        run.request("/api/apps")
        lists = [run.request("/api/apps") for _ in range(10)]
        size = len(lists[0][1]) / 1024
        rows.append((f"GET /api/apps, {args.apps} apps ({size:.0f} KiB)", "s",
                     f"{statistics.median(t for t, _ in lists):.3f}"))
        metrics = [run.request("/metrics")[0] for _ in range(5)]
        rows.append((f"GET /metrics, {args.apps} apps", "s", f"{statistics.median(metrics):.3f}"))
        lat = run.event_latency(10)
        if lat:
            rows.append(("kill -9 -> state event on /api/events (median)", "s",
                         f"{statistics.median(lat):.3f}"))
            rows.append(("kill -9 -> state event on /api/events (max)", "s", f"{max(lat):.3f}"))
        time.sleep(2)
        rows.append(("web server RSS", "MiB", f"{rss_mib(run.web_pid):.1f}"))
        log("measuring idle cpu (10 s)")
        rows.append(("web server idle cpu, no browser", "% of a core",
                     f"{idle_cpu(run.web_pid, 10):.2f}"))
        rows.append(("daemon idle cpu, web on", "% of a core",
                     f"{idle_cpu(run.daemon_pid, 10):.2f}"))
        if args.browser:
            got = run.browser()
            if got:
                rows.append(("page: first contentful paint", "s", f"{got[0]:.3f}"))
                rows.append((f"page: table with all {len(run.apps)} rows", "s", f"{got[1]:.3f}"))
    finally:
        run.close()
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}} | unit        | value")
    print("-" * width + "-+-------------+------")
    for name, unit, value in rows:
        print(f"{name:<{width}} | {unit:<11} | {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
