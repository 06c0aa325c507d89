"""`pyvm2 monit` driven in a real pseudo-terminal (tmux) against a real daemon and real apps."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import PYTHON, Pyvm2, fixture, wait_for

from pyvm2.cli.monit import parse_keys

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.timeout(90),
]

SESSION = "monit"
#: Monit polls once a second; everything it shows should appear within a few frames.
SCREEN_DEADLINE_S = 15.0


@dataclass
class Terminal:
    """`pyvm2 monit` in a detached tmux session on a private server, with the shell around it
    recording the terminal settings before and after, and monit's exit code."""

    socket: str
    marks: Path
    env: dict[str, str]

    def tmux(self, *args: str) -> str:
        r = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, timeout=10,
                           env=self.env)
        assert r.returncode == 0, f"tmux {' '.join(args)} failed: {r.stderr.decode(errors='replace')}"
        return r.stdout.decode(errors="replace")

    def start(self, home: Path, width: int = 120, height: int = 40) -> None:
        monit = " ".join(shlex.quote(a) for a in
                         ["env", "-u", "COLUMNS", "-u", "LINES", f"PYVM2_HOME={home}",
                          PYTHON, "-m", "pyvm2", "monit"])
        m = shlex.quote(str(self.marks))
        # The pane outlives monit (exec sleep) so the screen left behind can still be read; the
        # trap keeps a Ctrl-C meant for monit from killing the shell (children get SIGINT back).
        script = (f"trap : INT; stty -g > {m}/before; {monit} 2> {m}/stderr; echo $? > {m}/exit; "
                  f"stty -g > {m}/after; echo monit-ended; exec sleep 300")
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", SESSION, "-x", str(width),
                  "-y", str(height), "sh", "-c", script, ";", "set-option", "-g", "status", "off")

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", SESSION)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", SESSION, *keys)

    def show(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", SESSION, fmt).strip()

    def wait_screen(self, check: Callable[[str], bool], what: str) -> str:
        return wait_for(self.text, check, timeout=SCREEN_DEADLINE_S, what=f"the screen to show {what}")

    def monit_process(self) -> psutil.Process:
        def find() -> psutil.Process | None:
            shell = psutil.Process(int(self.show("#{pane_pid}")))
            for child in shell.children(recursive=True):
                if "monit" in child.cmdline() and "pyvm2" in child.cmdline():
                    return child
            return None

        found = wait_for(find, what="the monit process in the tmux pane")
        assert found is not None
        return found

    def wait_exit(self) -> int:
        code = wait_for(lambda: (self.marks / "exit").read_text().strip(), str.isdigit,
                        timeout=SCREEN_DEADLINE_S, what="monit to exit")
        return int(code)

    def stderr(self) -> str:
        try:
            return (self.marks / "stderr").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def assert_restored(self) -> None:
        """Back from the alternate screen, cursor shown, the same stty settings as before."""
        self.wait_screen(lambda s: "monit-ended" in s, "the shell after monit")
        before = (self.marks / "before").read_text()
        after = (self.marks / "after").read_text()
        assert before == after, f"terminal settings not restored:\n{before}\n{after}"
        assert self.show("#{alternate_on}") == "0", "still on the alternate screen"
        assert self.show("#{cursor_flag}") == "1", "the cursor is still hidden"

    def kill(self) -> None:
        """Kill the tmux server and everything running in its panes."""
        try:
            left = [psutil.Process(int(self.show("#{pane_pid}")))]
            left += left[0].children(recursive=True)
        except (AssertionError, psutil.Error, ValueError, subprocess.TimeoutExpired):
            left = []
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10, env=self.env)
        for p in left:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=5)


@pytest.fixture
def term(pv: Pyvm2, tmp_path: Path) -> Iterator[Terminal]:
    marks = tmp_path / "marks"
    marks.mkdir()
    # rich would believe a COLUMNS/LINES from the test's environment over the real terminal size.
    env = {k: v for k, v in pv.env.items() if k not in ("COLUMNS", "LINES", "TMUX", "TMUX_PANE")}
    t = Terminal(socket=f"pyvm2-monit-{os.getpid()}-{uuid.uuid4().hex[:8]}", marks=marks,
                 env=env)
    try:
        yield t
    finally:
        # Before pv's teardown, which fails the test on processes still carrying this home.
        t.kill()


def start_apps(pv: Pyvm2) -> None:
    for name in ("alpha", "beta"):
        pv.ok("start", fixture("monit_app.py"), "--name", name, "--", f"{name}-log")
    for name in ("alpha", "beta"):
        pv.wait_status(name, "online")
        pv.wait_log(name, f"{name}-log out 1")


def restarts(pv: Pyvm2) -> dict[str, int]:
    return {p["name"]: p["pm2_env"]["restart_time"] for p in pv.jlist()}


def test_monit_shows_apps_follows_selection_restarts_stops_resizes_and_quits(
        pv: Pyvm2, term: Terminal) -> None:
    start_apps(pv)
    term.start(pv.home)

    screen = term.wait_screen(
        lambda s: "alpha" in s and "beta" in s and s.count("online") >= 3
        and "alpha-log out" in s, "both apps online and alpha's log")
    assert re.search(r"args\s+alpha-log", screen), screen
    assert "beta-log" not in screen, screen

    term.keys("Down")
    screen = term.wait_screen(lambda s: "beta-log out" in s and "alpha-log" not in s,
                              "beta's details and log after ↓")
    assert re.search(r"beta \(1\)", screen), screen
    assert re.search(r"args\s+beta-log", screen), screen

    term.keys("r")
    wait_for(lambda: restarts(pv), lambda seen: seen.get("beta") == 1,
             what="beta to be restarted once")
    pv.wait_status("beta", "online")
    assert restarts(pv)["alpha"] == 0, "r restarted an app that was not selected"
    term.wait_screen(lambda s: "restarted beta" in s, "the restart confirmed")

    term.tmux("resize-window", "-t", SESSION, "-x", "80", "-y", "24")
    wait_for(lambda: term.show("#{pane_width}x#{pane_height}"), lambda s: s == "80x24",
             what="the pane to be 80x24")

    def narrow_and_whole(s: str) -> bool:
        lines = s.rstrip("\n").split("\n")
        return (len(lines) <= 24 and all(len(line) <= 80 for line in lines)
                and "alpha" in s and "beta-log out" in s
                # the narrow layout puts two details on one line
                and any("status" in line and "pid" in line for line in lines)
                # the log panel's bottom border sits just above the footer line
                and any(line.startswith("╰") for line in lines[-3:]))

    term.wait_screen(narrow_and_whole, "the dashboard laid out again for 80x24")

    term.keys("s")
    pv.wait_status("beta", "stopped")
    assert pv.status("alpha") == ["online"]
    term.wait_screen(lambda s: "stopped beta" in s and re.search(r"beta\s+stopped", s) is not None,
                     "beta stopped in the list")

    term.keys("q")
    assert term.wait_exit() == 0, term.stderr()
    term.assert_restored()
    assert "Traceback" not in term.stderr(), term.stderr()


def test_monit_without_apps_says_how_to_start_one_and_rides_out_a_daemon_crash(
        pv: Pyvm2, term: Terminal) -> None:
    pv.ok("ping")
    term.start(pv.home)
    term.wait_screen(lambda s: "no apps: start one with pyvm2 start" in s, "the empty-list hint")

    pid = pv.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    term.wait_screen(lambda s: "daemon unreachable" in s, "that the daemon is gone")
    assert term.monit_process().is_running()

    pv.ok("ping")
    term.wait_screen(lambda s: "daemon unreachable" not in s and "no apps: start one" in s,
                     "monit reconnected to the new daemon")

    term.keys("C-c")
    assert term.wait_exit() == 0, term.stderr()
    term.assert_restored()
    assert "Traceback" not in term.stderr(), term.stderr()


def test_monit_refuses_to_run_without_a_terminal(pv: Pyvm2) -> None:
    r = subprocess.run(pv.cmd("monit"), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60, env=pv.env, cwd=pv.workdir)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1, err
    assert "monit needs a terminal" in err
    assert "pyvm2 jlist" in err
    assert "Traceback" not in err


def test_arrow_keys_arrive_whole_even_when_split_across_reads() -> None:
    keys, pending = parse_keys(b"j\x1b[Ak\x1b")
    assert keys == ["down", "up", "up"]
    assert pending == b"\x1b"
    keys, pending = parse_keys(pending + b"[Bq")
    assert (keys, pending) == (["down", "quit"], b"")
    assert parse_keys(b"\x1bOA\x1bOB\x1b[6~") == (["up", "down", "pagedown"], b"")
    # a lone Escape that nothing follows is dropped, not taken as quit
    assert parse_keys(b"\x1b", final=True) == ([], b"")
    assert parse_keys(b"rs\x03") == (["restart", "stop", "quit"], b"")
