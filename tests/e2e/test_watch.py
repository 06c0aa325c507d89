"""Watch mode: what apps write next to their code never restarts them, a burst of changes gives
one restart, every watch restart says which file caused it, a crash backs off until the next
fix, and `restart --watch`, `stop` and `start` turn watching off and on."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import pytest
from conftest import Pyvm2, fixture, wait_for
from helpers_more import env_of, restarts, wait_restarts, wait_watching

IDLE_APP = ("import signal, sys, time\n"
            "def quiet_stop(*_):\n"
            # the daemon may deliver the stop signal twice (see the last test)
            "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGINT, quiet_stop)\n"
            "print('{tag} started', flush=True)\n"
            "while True:\n    time.sleep(1)\n")


def project(pv: Pyvm2, source: str = IDLE_APP.format(tag="v1")) -> Path:
    """A watched folder of its own (the ecosystem file stays outside it)."""
    proj = pv.workdir / "proj"
    proj.mkdir(exist_ok=True)
    (proj / "app.py").write_text(source)
    return proj


def start_watched(pv: Pyvm2, name: str = "web", proj: Path | None = None, **options) -> Path:
    proj = proj or project(pv)
    eco = pv.write_eco([{"name": name, "script": str(proj / "app.py"), "cwd": str(proj),
                         "watch": True, **options}])
    pv.ok("start", str(eco))
    pv.wait_status(name, "online")
    wait_watching(pv, name)
    return proj


def assert_restarts_stay(pv: Pyvm2, name: str, count: int, seconds: float) -> None:
    """Fixed observation window: nothing may restart `name` during it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        env = env_of(pv, name)
        assert env["restart_time"] == count and env["status"] == "online", \
            f"{name} restarted: {env['restart_time']} restarts, status {env['status']}, " \
            f"last reason {env.get('last_restart_reason')!r}"
        time.sleep(0.5)


@pytest.mark.timeout(60)
def test_start_watch_with_a_path_watches_that_path_only(pv: Pyvm2) -> None:
    """pm2's `--watch [paths]`: `start app.py --watch conf` watches conf, not the whole cwd."""
    proj = project(pv)
    (proj / "conf").mkdir()
    pv.ok("start", "app.py", "--name", "web", "--watch", "conf", cwd=proj)
    pv.wait_status("web", "online")
    assert env_of(pv, "web")["watch"] == [str(proj / "conf")]
    wait_watching(pv, "web")
    count = restarts(pv, "web")
    os.utime(proj / "app.py")
    assert_restarts_stay(pv, "web", count, 2)
    (proj / "conf" / "settings.ini").write_text("a = 1\n")
    got = wait_restarts(pv, "web", count + 1)
    assert "settings.ini" in (got["pm2_env"]["last_restart_reason"] or ""), got


@pytest.mark.timeout(60)
def test_stop_watch_turns_watching_off_for_good_as_pm2s_stop(pv: Pyvm2) -> None:
    proj = start_watched(pv)
    pv.ok("stop", "web", "--watch")
    assert env_of(pv, "web")["watch"] is False
    pv.ok("start", "web")
    pv.wait_status("web", "online")
    env = env_of(pv, "web")
    assert env["watch"] is False and env.get("watching") is None, env
    os.utime(proj / "app.py")
    assert_restarts_stay(pv, "web", env["restart_time"], 2)


@pytest.mark.timeout(90)
def test_logs_sqlite_wal_pycache_and_git_writes_in_the_watched_cwd_never_restart_it(
        pv: Pyvm2) -> None:
    proj = pv.workdir / "proj"
    proj.mkdir()
    script = proj / "writer.py"
    script.write_text(Path(fixture("watched_writer.py")).read_text())
    # the database exists, as a deployed app's does: creating data.db itself is a change the
    # watch sees (`start` returns, and watching begins, as soon as the app runs)
    import sqlite3

    with contextlib.closing(sqlite3.connect(proj / "data.db")) as db:
        db.execute("pragma journal_mode=wal")
        db.execute("create table t (n integer, at real)")
        db.commit()
    eco = pv.write_eco([{"name": "writer", "script": str(script), "cwd": str(proj),
                         "watch": True}])
    pv.ok("start", str(eco))
    wait_watching(pv, "writer")
    pv.wait_log("writer", "wrote 10")
    pid = pv.proc("writer")["pid"]

    # 10 s of an app writing its log, its database (with -wal/-shm), bytecode and git files
    assert_restarts_stay(pv, "writer", 0, 10)

    p = pv.proc("writer")
    assert p["pid"] == pid, p
    assert (proj / "data.db-wal").exists() and (proj / "logs" / "app.log").exists()
    assert (proj / "__pycache__" / "mod.cpython-311.pyc").exists()
    assert pv.read_log("writer").count("writer started") == 1, pv.read_log("writer")


@pytest.mark.timeout(60)
def test_thirty_files_written_at_once_give_exactly_one_restart(pv: Pyvm2) -> None:
    proj = start_watched(pv)
    src = proj / "src"
    src.mkdir()
    for i in range(30):
        (src / f"module_{i}.py").write_text(f"VALUE = {i}\n")

    got = wait_restarts(pv, "web", 1)
    assert got["pm2_env"]["restart_time"] == 1, got
    assert "file changed" in (got["pm2_env"]["last_restart_reason"] or ""), got
    # the burst may still be settling: no second restart may follow it
    assert_restarts_stay(pv, "web", 1, 4)


@pytest.mark.timeout(60)
def test_touching_the_script_restarts_once_and_says_which_file_changed(pv: Pyvm2) -> None:
    proj = start_watched(pv)
    old_pid = pv.proc("web")["pid"]
    os.utime(proj / "app.py")

    got = wait_restarts(pv, "web", 1)
    assert got["pid"] != old_pid
    reason = got["pm2_env"]["last_restart_reason"] or ""
    assert "file changed" in reason and "app.py" in reason, reason

    described = pv.ok("describe", "web").out
    assert re.search(r"last restart reason\s*│\s*file changed: app\.py", described), described

    logs = pv.ok("logs", "web", "--nostream", "--lines", "50").out
    assert re.search(r"^PYVM2\s*\|.*file changed: app\.py", logs, re.M), logs
    assert_restarts_stay(pv, "web", 1, 2)


@pytest.mark.timeout(60)
def test_a_crash_in_watch_mode_backs_off_and_the_fix_restarts_at_once(pv: Pyvm2) -> None:
    # a 2 s first back-off makes "at once" measurable: the fix must not wait for it
    proj = start_watched(pv, exp_backoff_restart_delay=2000)
    (proj / "app.py").write_text("import time\nprint('half saved'\n")   # a syntax error

    waiting = wait_for(lambda: env_of(pv, "web"),
                       lambda e: e["status"] == "waiting restart" and e["unstable_restarts"] >= 2,
                       timeout=30, what="web to crash twice and back off")
    due_ms = waiting["next_restart_at"]
    assert due_ms and due_ms - time.time() * 1000 > 500, waiting

    (proj / "app.py").write_text(IDLE_APP.format(tag="v2"))
    pv.wait_log("web", "v2 started", timeout=10)
    got = pv.wait_status("web", "online")[0]
    started_ms = got["pm2_env"]["pm_uptime"]
    assert started_ms < due_ms, f"the fix waited for the back-off: started {started_ms}, due {due_ms}"
    assert "file changed" in (got["pm2_env"]["last_restart_reason"] or ""), got
    assert_restarts_stay(pv, "web", got["pm2_env"]["restart_time"], 2)


@pytest.mark.timeout(60)
def test_restart_watch_toggles_watching_and_the_watching_column(pv: Pyvm2) -> None:
    proj = project(pv)
    eco = pv.write_eco([{"name": "web", "script": str(proj / "app.py"), "cwd": str(proj)}])
    pv.ok("start", str(eco))
    assert env_of(pv, "web")["watch"] is False
    assert re.search(r"│\s*web\s*│.*│\s*disabled\s*│", pv.ok("list").out)

    on = pv.ok("restart", "web", "--watch")
    assert re.search(r"│\s*web\s*│.*│\s*enabled\s*│", on.out), on
    assert env_of(pv, "web")["watch"] is True
    wait_watching(pv, "web")
    before = restarts(pv, "web")
    os.utime(proj / "app.py")
    wait_restarts(pv, "web", before + 1)

    off = pv.ok("restart", "web", "--watch")
    assert re.search(r"│\s*web\s*│.*│\s*disabled\s*│", off.out), off
    env = env_of(pv, "web")
    assert env["watch"] is False and env.get("watching") is None, env
    count = env["restart_time"]
    os.utime(proj / "app.py")
    assert_restarts_stay(pv, "web", count, 2)   # nothing watches any more


@pytest.mark.timeout(60)
def test_stop_pauses_watching_and_start_resumes_it(pv: Pyvm2) -> None:
    proj = start_watched(pv)
    pv.ok("stop", "web")
    os.utime(proj / "app.py")
    (proj / "new.py").write_text("x = 1\n")
    # fixed observation window: a change while stopped must not start the app
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        assert pv.status("web") == ["stopped"], pv.proc("web")
        time.sleep(0.5)

    pv.ok("start", "web")
    pv.wait_status("web", "online")
    wait_watching(pv, "web")
    before = restarts(pv, "web")
    os.utime(proj / "app.py")
    got = wait_restarts(pv, "web", before + 1)
    assert "app.py" in (got["pm2_env"]["last_restart_reason"] or ""), got


@pytest.mark.timeout(90)
def test_a_watch_restart_delivers_the_stop_signal_once(pv: Pyvm2) -> None:
    proj = pv.workdir / "proj"
    proj.mkdir()
    script = proj / "worker.py"
    script.write_text(Path(fixture("count_signals.py")).read_text())
    eco = pv.write_eco([{"name": "worker", "script": str(script), "cwd": str(proj),
                         "watch": True}])
    pv.ok("start", str(eco))
    wait_watching(pv, "worker")
    for i in range(1, 7):
        # a change right after a restart is muted by design, so touch again until it takes
        deadline = time.monotonic() + 20
        while pv.read_log("worker").count("ready ") <= i:
            assert time.monotonic() < deadline, f"restart {i} never came:\n{pv.read_log('worker')}"
            os.utime(script)
            time.sleep(1.0)   # debounce (0.3 s) + graceful stop (0.3 s) + start
    counts = [int(n) for n in re.findall(r"stop signals delivered: (\d+)", pv.read_log("worker"))]
    assert len(counts) >= 6, pv.read_log("worker")
    assert counts == [1] * len(counts), f"stop signals per restart: {counts}"
