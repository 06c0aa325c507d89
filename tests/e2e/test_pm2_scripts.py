"""What pm2's own end-to-end scripts (tools/pm2-e2e) check, against a real daemon: `start -f`
adding copies, the counts scripts take from prettylist, pid file names, and `start NAME`."""

from __future__ import annotations

import shutil

from conftest import Pyvm2, fixture


def test_start_force_adds_copies_and_leaves_the_running_ones_alone(pv: Pyvm2) -> None:
    shutil.copy(fixture("ticker.py"), pv.workdir / "tick.py")
    pv.ok("start", "tick.py")
    pv.wait_status("tick", "online")
    pv.ok("restart", "tick")
    first = pv.wait_status("tick", "online")
    again = pv.run("start", "tick.py")
    assert again.code == 1 and "already running" in again.err, again  # without -f, as pm2
    pv.ok("start", "tick.py", "-f")
    pv.ok("start", "tick.py", "-i", "2", "-f")
    procs = pv.wait_status("tick", "online")
    assert [p["pm_id"] for p in procs] == [0, 1, 2, 3], procs
    restarts = [p["pm2_env"]["restart_time"] for p in procs]
    assert procs[0]["pid"] == first[0]["pid"] and restarts == [1, 0, 0, 0], procs
    pv.ok("stop", "0")
    assert pv.ok("prettylist").out.count("stopped") == 1
    pv.ok("reset", "tick")
    assert pv.ok("prettylist").out.count("restart_time: 0") == 4


def test_a_pid_file_gets_the_process_id_as_pm2_names_it(pv: Pyvm2) -> None:
    shutil.copy(fixture("ticker.py"), pv.workdir / "tick.py")
    pv.ok("start", "tick.py", "-p", "tick.pid", "-i", "2")
    procs = pv.wait_status("tick", "online")
    for p in procs:
        path = pv.workdir / f"tick-{p['pm_id']}.pid"
        assert p["pm2_env"]["pm_pid_path"] == str(path)
        assert path.read_text().strip() == str(p["pid"])
    pv.ok("stop", "all")
    assert not (pv.workdir / "tick-0.pid").exists()
    assert not (pv.workdir / "tick.pid").exists()


def test_start_by_name_starts_a_stopped_app_and_restarts_a_running_one(pv: Pyvm2) -> None:
    shutil.copy(fixture("ticker.py"), pv.workdir / "tick.py")
    pv.ok("start", "tick.py", "--name", "echo")  # a name that is also a command on PATH
    pv.wait_status("echo", "online")
    pv.ok("stop", "echo")
    pv.ok("start", "echo")
    (p,) = pv.wait_status("echo", "online")
    assert p["pm2_env"]["pm_exec_path"] == str(pv.workdir / "tick.py")
    assert p["pm2_env"]["restart_time"] == 0
    pv.ok("start", "echo")
    pv.ok("start", "0")
    (p,) = pv.wait_status("echo", "online")
    assert p["pm2_env"]["restart_time"] == 2 and len(pv.jlist()) == 1


def test_shutdown_with_message_is_accepted_with_a_warning(pv: Pyvm2) -> None:
    shutil.copy(fixture("ticker.py"), pv.workdir / "tick.py")
    r = pv.ok("start", "tick.py", "--shutdown-with-message")
    assert "shutdown_with_message is not supported" in r.err, r
    pv.wait_status("tick", "online")
