"""Helpers shared by the watch, resource, recovery, persistence, log-rotation, hostile-input and
load tests (on top of conftest's): watch readiness, restart counts, processes by run token, raw
socket exchanges and running as another user."""

from __future__ import annotations

import re
import socket
import subprocess
from collections import defaultdict
from typing import Any

import psutil
from conftest import TOKEN_VAR, Pyvm2, proc_environ, processes_of_home, wait_for


def env_of(pv: Pyvm2, name: str) -> dict[str, Any]:
    return pv.proc(name)["pm2_env"]


def restarts(pv: Pyvm2, name: str) -> int:
    return int(env_of(pv, name)["restart_time"])


def wait_watching(pv: Pyvm2, name: str, timeout: float = 20) -> dict:
    """Wait until the daemon reports the watch of `name` in place (inotify or polling)."""
    return wait_for(lambda: env_of(pv, name),
                    lambda e: e.get("watching") in ("inotify", "polling"),
                    timeout=timeout, what=f"the watch of {name} to be in place")


def wait_restarts(pv: Pyvm2, name: str, at_least: int, timeout: float = 20) -> dict:
    """Wait until `name` restarted at least `at_least` times and is online again."""
    return wait_for(lambda: pv.proc(name),
                    lambda p: p["pm2_env"]["restart_time"] >= at_least
                    and p["pm2_env"]["status"] == "online",
                    timeout=timeout, what=f"{name} to restart ({at_least}) and be online")


def app_processes_by_token(pv: Pyvm2) -> dict[str, list[int]]:
    """Live processes of this home (apps and their descendants) grouped by their run token."""
    found: dict[str, list[int]] = defaultdict(list)
    for p in processes_of_home(pv.home):
        env = proc_environ(p.pid) or {}
        token = env.get(TOKEN_VAR)
        if token:
            found[token].append(p.pid)
    return dict(found)


def token_of(pid: int) -> str | None:
    return (proc_environ(pid) or {}).get(TOKEN_VAR)


def daemons_of(pv: Pyvm2) -> list[int]:
    out = []
    for p in processes_of_home(pv.home):
        try:
            if "pyvm2.daemon" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def numbers_in(text: str, pattern: str = r"line (\d+)") -> list[int]:
    """Numbers of complete lines matching pattern (a last line without newline is skipped)."""
    lines = text.split("\n")[:-1]
    rx = re.compile(pattern)
    return [int(m.group(1)) for ln in lines if (m := rx.fullmatch(ln.strip()))]


def floats_after(text: str, word: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(rf"^{word} (\d+\.\d+)", text, re.M)]


def sock_path(pv: Pyvm2) -> str:
    return str(pv.home / "pyvm2.sock")


def connect(pv: Pyvm2, timeout: float = 20) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path(pv))
    return s


def read_reply(s: socket.socket) -> bytes:
    """Read until a newline, EOF or a reset; return what came (b"" when the peer hung up)."""
    data = b""
    while b"\n" not in data:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    return data


def run_as(user: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd="/")
