"""Faults at the door and around it: names that cannot become file names or would hide what they
say, a disk that fills under the home, a low descriptor limit, an update during a slow stop, and
saved lists that cannot be written or read."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import Pyvm2, alive, processes_of_home, wait_for


# ---- names ------------------------------------------------------------------------------------
def test_a_300_character_name_runs_and_its_output_is_kept(pv: Pyvm2) -> None:
    name = "n" * 300
    pv.ok("start", pv.app("t", "ticker.py")["script"], "--name", name)
    pv.wait_status(name, "online")
    env = pv.proc(name)["pm2_env"]
    out, err = Path(env["pm_out_log_path"]), Path(env["pm_err_log_path"])
    assert len(out.name) < 255 and len(err.name) < 255, (out, err)
    wait_for(lambda: out.read_text() if out.exists() else "", lambda t: "tick 1" in t,
             what="the long-named app's output in its log")
    wait_for(lambda: err.read_text() if err.exists() else "", lambda t: "tock 1" in t,
             what="the long-named app's errors in its log")
    shown = pv.ok("logs", name, "--nostream", "--lines", "5").out
    assert "tick" in shown, shown
    # two long names that start alike get files of their own
    other = "n" * 299 + "m"
    pv.ok("start", pv.app("t", "ticker.py")["script"], "--name", other)
    assert pv.proc(other)["pm2_env"]["pm_out_log_path"] != str(out)
    pv.ok("delete", name)
    pv.ok("delete", other)


@pytest.mark.parametrize("name", ["evil\u202etxt.exe", "tab\there", "c1\u0085x", "zero\u200bwidth",
                                  "line\u2028sep"])
def test_names_that_would_hide_what_they_say_are_refused_at_the_door(pv: Pyvm2, name: str) -> None:
    r = pv.run("start", pv.app("t", "ticker.py")["script"], "--name", name)
    assert r.code == 2, str(r)
    assert "Traceback" not in r.err
    line = r.first_err_line
    assert "character" in line and "U+" in line, str(r)
    # the error itself shows the character escaped, never raw
    assert all(ch not in r.err for ch in "\u202e\u0085\u200b\u2028\t"), repr(r.err)
    eco = pv.write_eco([pv.app(name, "ticker.py")])
    r = pv.run("start", str(eco))
    assert r.code == 2 and "U+" in r.err, str(r)
    assert pv.jlist() == []


def test_the_daemon_refuses_such_names_from_any_client(pv: Pyvm2) -> None:
    import socket

    pv.ok("ping")
    spec = {"name": "a\u202eb", "script": pv.app("t", "ticker.py")["script"], "cwd": str(pv.workdir)}
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(pv.home / "pyvm2.sock"))
    s.sendall(json.dumps({"id": 1, "cmd": "start", "args": {"apps": [spec]}}).encode() + b"\n")
    reply = json.loads(s.makefile("rb").readline())
    s.close()
    assert not reply["ok"] and "U+202E" in reply["error"]["message"], reply
    assert pv.jlist() == []


# ---- a full disk under the home -------------------------------------------------------------
@pytest.fixture
def small_home(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Pyvm2 whose home is a 16 MiB tmpfs of its own, unmounted after the test even when it
    fails (after every process of the home is stopped)."""
    home = tmp_path_factory.mktemp("h")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the home needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(home)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    work = tmp_path / "work"
    work.mkdir()
    pv = Pyvm2(home=home, workdir=work)
    try:
        yield pv
    finally:
        try:
            (home / "filler").unlink(missing_ok=True)
            problems = pv.cleanup()
        finally:
            subprocess.run(["umount", "-l", str(home)], check=False)
    if problems:
        pytest.fail("cleanup after the test found:\n" + "\n".join(problems), pytrace=False)


class Filler:
    """Keeps the file system of `folder` full to the last byte: what anything frees (a log cut
    back to its last whole line) is taken again at once, as another program filling the disk
    would. `stop` ends it and removes its file."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "filler"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._stop = threading.Event()
        self._fill()
        self.thread = threading.Thread(target=self._keep_full, daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        for size in (1 << 20, 4096, 1):
            chunk = b"x" * size
            try:
                while True:
                    os.write(self.fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e

    def _keep_full(self) -> None:
        while not self._stop.wait(0.002):
            self._fill()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.thread.join(5)
            os.close(self.fd)
            self.path.unlink(missing_ok=True)


@pytest.fixture
def filler(small_home: Pyvm2):
    made: list[Filler] = []
    yield lambda: made.append(Filler(small_home.home)) or made[-1]
    for f in made:
        f.stop()


def state_of(pv: Pyvm2, name: str) -> dict | None:
    doc = json.loads((pv.home / "state.json").read_bytes())
    return next((p for p in doc["procs"] if p["spec"]["name"] == name), None)


def outside(pv: Pyvm2) -> dict[str, str]:
    return {"pid_file": str(pv.workdir / "t.pid"), "out_file": str(pv.workdir / "t-out.log"),
            "error_file": str(pv.workdir / "t-err.log")}


def test_a_stop_that_cannot_be_saved_says_so_and_lands_once_there_is_room(
        small_home: Pyvm2, filler) -> None:
    pv = small_home
    # its pid and log files elsewhere: removing the pid file at the stop would free room
    pv.ok("start", str(pv.write_eco([pv.app("t", "ticker.py", **outside(pv))])))
    app_pid = pv.proc("t")["pid"]
    full = filler()
    r = pv.run("stop", "t")
    assert r.code != 0, str(r)
    assert "Traceback" not in r.err and "pyvm2 bug" not in r.err, str(r)
    assert "state.json" in r.first_err_line and "No space left" in r.first_err_line, str(r)
    assert "free space" in r.err, str(r)
    # in effect: the app is stopped, and the daemon knows it should stay so
    wait_for(lambda: alive(app_pid), lambda a: not a, what="the stopped app to be gone")
    assert pv.proc("t")["pm2_env"]["desired"] == "stopped"
    # a second command on the still-full disk says so too
    r = pv.run("stop", "t")
    assert r.code != 0 and "state.json" in r.err, str(r)
    # `save` on the full disk: one clear line, no internal error
    r = pv.run("save")
    assert r.code != 0, str(r)
    assert "dump.json" in r.first_err_line and "No space left" in r.first_err_line, str(r)
    assert "pyvm2 bug" not in r.err and "internal" not in r.err, str(r)
    # room again: the daemon's retry writes the state without being asked
    full.stop()
    wait_for(lambda: state_of(pv, "t"), lambda e: e is not None and e["desired"] == "stopped",
             what="the state file to hold the stop", timeout=30)
    # so a crash now does not bring the app back
    os.kill(pv.daemon_pid(), signal.SIGKILL)
    wait_for(lambda: pv.daemon_pid(), lambda p: p is None or not alive(p),
             what="the daemon to die")
    assert pv.status("t") == ["stopped"]
    assert [p for p in processes_of_home(pv.home) if "ticker" in " ".join(p.cmdline())] == []


def test_kill_on_a_full_disk_leaves_nothing_to_come_back(small_home: Pyvm2, filler) -> None:
    pv = small_home
    pv.ok("start", pv.app("t", "ticker.py")["script"], "--name", "t")
    full = filler()
    r = pv.ok("kill")
    assert "All Applications Stopped" in r.out
    full.stop()
    assert pv.jlist() == []


# ---- saved lists that cannot be read ----------------------------------------------------------
def test_resurrect_of_a_deeply_nested_dump_says_what_is_wrong(pv: Pyvm2) -> None:
    pv.home.mkdir(mode=0o700, exist_ok=True)
    (pv.home / "dump.json").write_text("[" * 100_000 + "]" * 100_000)
    r = pv.run("resurrect")
    assert r.code != 0, str(r)
    assert "dump.json" in r.first_err_line and "nested too deeply" in r.first_err_line, str(r)
    assert "pyvm2 bug" not in r.err and "internal" not in r.err, str(r)
    assert "hint:" in r.err
    pv.ok("ping")


def test_dump_entries_missing_fields_are_skipped_with_a_sentence(pv: Pyvm2) -> None:
    good = {"name": "good", "script": pv.app("t", "ticker.py")["script"], "cwd": str(pv.workdir)}
    pv.home.mkdir(mode=0o700, exist_ok=True)
    (pv.home / "dump.json").write_text(json.dumps({"format": 1, "next_id": 3, "envs": {}, "procs": [
        {"spec": {"name": "half"}, "desired": "running"},
        {"pm_id": 1, "desired": "running"},
        {"spec": dict(good, env=["not", "an", "object"]), "desired": "running"},
        {"spec": dict(good, name="badinst"), "instance": "two", "desired": "running"},
        {"spec": good, "desired": "running"},
    ]}))
    r = pv.ok("resurrect")
    text = r.out + r.err
    assert "missing script, cwd" in text, text
    assert "no app definition" in text, text
    assert "env must be an object" in text, text
    assert "instance must be a whole number" in text, text
    assert "__init__" not in text and "positional argument" not in text, text
    assert pv.status("good") == ["online"]


def test_import_pm2_of_a_deeply_nested_or_odd_dump_says_what_is_wrong(pv: Pyvm2) -> None:
    deep = pv.workdir / "deep.pm2"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    r = pv.run("import-pm2", str(deep))
    assert r.code != 0 and "nested too deeply" in r.first_err_line, str(r)
    assert "Traceback" not in r.err and "pyvm2 bug" not in r.err, str(r)
    odd = pv.workdir / "odd.pm2"
    odd.write_text(json.dumps([{"pm_exec_path": {"a": 1}}, {"pm_exec_path": "/bin/sleep",
                                                          "name": ["x"]}]))
    r = pv.ok("import-pm2", str(odd))
    assert r.err.count("skipped") == 2, str(r)


# ---- update during a slow stop --------------------------------------------------------------
def test_update_during_a_slow_stop_waits_for_it_and_both_get_a_true_answer(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("r", "ignore_signals.py", kill_timeout=4000)])
    pv.ok("start", str(eco))
    pv.wait_log("r", "ignoring signals")
    app_pid = pv.proc("r")["pid"]
    old_daemon = pv.daemon_pid()
    stopping = pv.popen("stop", "r")
    pv.wait_status("r", "stopping")
    r = pv.ok("update", timeout=90)
    out, err = stopping.communicate(timeout=60)
    assert stopping.returncode == 0, (out, err)
    assert b"may have crashed" not in err and b"Applying action stop" in out, (out, err)
    assert "1 app(s) kept running" not in r.out, str(r)
    assert pv.daemon_pid() != old_daemon
    p = pv.proc("r")
    assert p["pm2_env"]["status"] == "stopped" and p["pm2_env"]["desired"] == "stopped", p
    assert not alive(app_pid)


def test_commands_that_change_something_wait_out_a_handover(pv: Pyvm2) -> None:
    """While the old daemon waits for a slow stop, a start is refused with a sentence (not lost,
    not half done), and works once the new daemon is up."""
    eco = pv.write_eco([pv.app("r", "ignore_signals.py", kill_timeout=15000),
                        pv.app("t", "ticker.py", autostart=False)])
    pv.ok("start", str(eco))
    pv.wait_log("r", "ignoring signals")
    stopping = pv.popen("stop", "r")
    pv.wait_status("r", "stopping")
    update = pv.popen("update")
    wait_for(lambda: (pv.home / "pyvm2.log").read_text(),
             lambda t: "handover: waiting" in t, what="the handover to wait")
    r = pv.run("start", "t")
    assert r.code == 3 and "being replaced" in r.first_err_line, str(r)
    assert update.wait(60) == 0 and stopping.wait(60) == 0
    pv.ok("start", "t")
    pv.wait_status("t", "online")


# ---- a low descriptor limit -------------------------------------------------------------------
def test_a_low_descriptor_limit_refuses_starts_with_a_sentence_and_stops_still_work(
        pv: Pyvm2) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    eco = pv.write_eco([pv.app(f"a{i}", "ticker.py", env={"TICK_S": "1"}) for i in range(40)])
    # the daemon this CLI starts inherits the limit (and cannot raise it past the hard one)
    r = subprocess.run(["prlimit", "--nofile=100:100", *pv.cmd("start", str(eco))],
                       capture_output=True, text=True, timeout=120, cwd=pv.workdir, env=pv.env)
    assert r.returncode != 0, r
    assert "Traceback" not in r.stderr and "/dev/null" not in r.stderr, r.stderr
    assert "file descriptors" in r.stderr and "100" in r.stderr, r.stderr
    assert "ulimit -n" in r.stderr and "LimitNOFILE" in r.stderr, r.stderr
    procs = pv.jlist()
    online = [p for p in procs if p["pm2_env"]["status"] == "online"]
    errored = [p for p in procs if p["pm2_env"]["status"] == "errored"]
    assert online and errored and len(online) + len(errored) == 40, procs
    assert all("file descriptors" in p["pm2_env"]["status_reason"] for p in errored)
    # what keeps the descriptors can always be stopped, deleted and killed
    pv.ok("stop", online[0]["name"])
    pv.ok("delete", online[1]["name"])
    pv.ok("start", errored[0]["name"])   # there is room for one again
    pv.wait_status(errored[0]["name"], "online")
    pv.ok("stop", "all")
    assert {p["pm2_env"]["status"] for p in pv.jlist()} == {"stopped"}
    r = pv.run("start", "all")
    assert r.code != 0 and "file descriptors" in r.err, str(r)
    r = pv.ok("kill")
    assert "All Applications Stopped (39)" in r.out, str(r)
    assert [p for p in processes_of_home(pv.home) if "ticker" in " ".join(p.cmdline())] == []
