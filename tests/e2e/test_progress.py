"""The progress line of a slow command: on a terminal (stderr a real pseudo-terminal), one line
`stopping 12/200 (waiting for s5:5)` rewritten in place and erased at the end; never on a pipe,
nor with --silent. And `start` answers once the apps run, waiting only for readiness."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

from conftest import Pyvm2, wait_for

APPS = 200
LINE = re.compile(rb"\r(stopping|starting|restarting|deleting) (\d+)/(\d+)"
                  rb"(?: \(waiting for ([^)]+)\))?\x1b\[K")


class Pty:
    """A command whose stderr (and stdin) is a pseudo-terminal; stdout goes to a file."""

    def __init__(self, pv: Pyvm2, out: Path, *args: str) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.out_path = out
        with open(out, "wb") as stdout:
            self.proc = subprocess.Popen(pv.cmd(*args), stdin=slave, stdout=stdout, stderr=slave,
                                         cwd=pv.workdir, env=pv.env, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def read_until(self, check: Callable[[bytes], bool], timeout: float = 60) -> bytes:
        """Read what the terminal shows until `check` holds or the command ended."""
        import select

        deadline = time.monotonic() + timeout
        while not check(self.seen) and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:   # EIO: the command ended and closed the terminal
                break
            if not data:
                break
            self.seen += data
        return self.seen

    def finish(self, timeout: float = 120) -> tuple[int, bytes, str]:
        self.read_until(lambda _b: False, timeout)
        code = self.proc.wait(timeout)
        os.close(self.master)
        return code, self.seen, self.out_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        try:
            os.close(self.master)
        except OSError:
            pass


def all_status(pv: Pyvm2, status: str) -> None:
    wait_for(lambda: pv.jlist(), lambda ps: len(ps) == APPS and
             all(p["pm2_env"]["status"] == status for p in ps),
             timeout=120, what=f"{APPS} apps {status}")


def test_stop_of_many_slow_apps_shows_a_progress_line_on_a_terminal_only(pv: Pyvm2,
                                                                        tmp_path: Path) -> None:
    apps = [pv.app(f"s{i}", "slow_stop.sh", env={"SLOW_STOP_S": "4"}, kill_timeout=20000)
            for i in range(APPS)]
    pv.ok("start", str(pv.write_eco(apps)), timeout=180)
    all_status(pv, "online")

    term = Pty(pv, tmp_path / "out1", "stop", "all")
    try:
        code, seen, out = term.finish()
    finally:
        term.kill()
    assert code == 0, seen
    lines = LINE.findall(seen)
    assert lines, seen[:2000]
    assert all(verb == b"stopping" and total == str(APPS).encode() for verb, _, total, _ in lines)
    counts = [int(done) for _, done, _, _ in lines]
    assert counts == sorted(counts), counts          # it only goes forward
    assert any(re.fullmatch(rb"s\d+:\d+", waiting) for _, _, _, waiting in lines), lines[:5]
    # the line is erased at the end: nothing of it is left after the last erase
    assert seen.endswith(b"\r\x1b[K"), seen[-300:]
    assert "Applying action stop" in out and "Traceback" not in out
    assert all(p["pm2_env"]["status"] == "stopped" for p in pv.jlist())

    # on a pipe: the same slow command prints no progress at all
    pv.ok("start", "all", timeout=180)
    all_status(pv, "online")
    r = pv.ok("stop", "all", timeout=180)
    assert "\x1b[K" not in r.err and "stopping " not in r.err, r

    # --silent on a terminal: nothing either
    pv.ok("start", "all", timeout=180)
    all_status(pv, "online")
    term = Pty(pv, tmp_path / "out2", "stop", "all", "--silent")
    try:
        code, seen, out = term.finish()
    finally:
        term.kill()
    assert code == 0 and seen == b"" and out == "", (seen, out)


def test_start_waits_for_readiness_and_shows_what_it_waits_for(pv: Pyvm2, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    eco = pv.write_eco([pv.app("gated", "ready_app.py", wait_ready=True, listen_timeout=60000,
                               env={"READY_GATE": str(gate)})])
    pv.ok("ping")
    term = Pty(pv, tmp_path / "out", "start", str(eco))
    try:
        seen = term.read_until(lambda b: b"(waiting for gated:0)" in b)
        assert b"\rstarting 0/1 (waiting for gated:0)\x1b[K" in seen, seen
        assert term.proc.poll() is None   # still waiting: the app has not said it is ready
        assert pv.status("gated") == ["launching"]
        gate.touch()
        code, seen, out = term.finish()
    finally:
        term.kill()
    assert code == 0, seen
    assert seen.endswith(b"\r\x1b[K"), seen
    # the table start printed shows it online: start returned once it was ready
    assert re.search(r"│\s*gated\s*│.*│\s*online\s*│", out), out

