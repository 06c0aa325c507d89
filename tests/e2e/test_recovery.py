"""The daemon dies or is replaced; the apps do not notice: after kill -9 the next daemon re-adopts
every running app (same pids, no duplicate), a stopped app stays stopped, output keeps flowing
into the logs without a lost line, and `pyvm2 update` hands the apps over without a restart."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import Pyvm2, alive, wait_for
from helpers_more import app_processes_by_token, daemons_of, numbers_in, token_of


def start_three(pv: Pyvm2) -> dict[str, int]:
    """`count` prints numbered lines without pause, `calm` idles, `off` is stopped."""
    eco = pv.write_eco([pv.app("count", "numbered.py", env={"NUMBERED_SLEEP_S": "0.001"}),
                        pv.app("calm", "show_env.py"),
                        pv.app("off", "ticker.py", env={"TICK_S": "1"})])
    pv.ok("start", str(eco))
    pv.ok("stop", "off")
    procs = {p["name"]: p for p in pv.jlist()}
    assert procs["off"]["pm2_env"]["status"] == "stopped", procs["off"]
    assert all(procs[n]["pm2_env"]["status"] == "online" for n in ("count", "calm")), procs
    return {n: procs[n]["pid"] for n in ("count", "calm")}


def assert_each_app_once(pv: Pyvm2, pids: dict[str, int]) -> None:
    by_token = app_processes_by_token(pv)
    expected = {token_of(pid): [pid] for pid in pids.values()}
    assert None not in expected, "the apps should carry their run token"
    assert by_token == expected, f"processes by run token: {by_token}, expected {expected}"


def count_lines(pv: Pyvm2) -> list[int]:
    return numbers_in(pv.read_log("count"))


def assert_no_line_lost(pv: Pyvm2, after: int) -> list[int]:
    """Wait until the log has lines past `after`, then check 0..N are all there, in order."""
    numbers = wait_for(lambda: count_lines(pv), lambda ns: bool(ns) and ns[-1] > after,
                       timeout=20, what=f"line numbers past {after} in the count log")
    expected = list(range(numbers[-1] + 1))
    if numbers != expected:
        missing = sorted(set(expected) - set(numbers))[:20]
        dupes = len(numbers) - len(set(numbers))
        disorder = next((i for i, (a, b) in enumerate(zip(numbers, numbers[1:], strict=False)) if b <= a), None)
        pytest.fail(f"{len(missing)}+ missing line numbers (first {missing}), {dupes} duplicates, "
                    f"first out of order at index {disorder}; {len(numbers)} lines up to "
                    f"{numbers[-1]}", pytrace=False)
    return numbers


@pytest.mark.timeout(90)
def test_after_kill_9_of_the_daemon_each_app_runs_once_with_its_pid_and_no_line_is_lost(
        pv: Pyvm2) -> None:
    pids = start_three(pv)
    assert_each_app_once(pv, pids)
    pv.wait_log("count", "line 500")
    old = pv.daemon_pid()
    assert old is not None

    os.kill(old, signal.SIGKILL)
    wait_for(lambda: alive(old), lambda a: not a, what="the killed daemon to be gone")
    last_before = max(count_lines(pv), default=0)
    time.sleep(1)   # a while without any daemon: the app keeps writing into its pipe

    listed = pv.ok("list").out
    assert listed.count(" count ") == 1 and listed.count(" calm ") == 1, listed
    procs = {p["name"]: p for p in pv.jlist()}
    assert sorted(procs) == ["calm", "count", "off"], procs
    assert {n: procs[n]["pid"] for n in ("count", "calm")} == pids, procs
    assert procs["count"]["pm2_env"]["status"] == "online"
    assert procs["calm"]["pm2_env"]["status"] == "online"
    assert procs["off"]["pm2_env"]["status"] == "stopped"
    assert daemons_of(pv) == [pv.daemon_pid()] and pv.daemon_pid() != old
    assert_each_app_once(pv, pids)

    # the app kept printing while no daemon read its pipe: every number reaches the log
    assert_no_line_lost(pv, last_before + 2000)

    # and the re-adopted apps obey: stop ends them, start brings exactly one copy back
    pv.ok("stop", "count")
    assert not alive(pids["count"])
    pv.ok("start", "count")
    new_pid = pv.proc("count")["pid"]
    assert new_pid != pids["count"]
    assert_each_app_once(pv, {"count": new_pid, "calm": pids["calm"]})


@pytest.mark.timeout(90)
def test_a_second_kill_9_right_after_recovery_still_leaves_one_copy_of_each(pv: Pyvm2) -> None:
    pids = start_three(pv)
    for _ in range(2):
        old = pv.daemon_pid()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda old=old: alive(old), lambda a: not a, what="the killed daemon to be gone")
        pv.ok("ping")
    procs = {p["name"]: p for p in pv.jlist()}
    assert {n: procs[n]["pid"] for n in ("count", "calm")} == pids, procs
    assert procs["off"]["pm2_env"]["status"] == "stopped", procs["off"]
    assert_each_app_once(pv, pids)


@pytest.mark.timeout(90)
def test_update_replaces_the_daemon_and_keeps_the_apps_running_with_the_same_pids(
        pv: Pyvm2) -> None:
    pids = start_three(pv)
    pv.wait_log("count", "line 200")
    old = pv.daemon_pid()

    r = pv.ok("update")
    assert "kept running" in r.out + r.err, r
    new = pv.daemon_pid()
    assert new and new != old and not alive(old), (old, new)
    procs = {p["name"]: p for p in pv.jlist()}
    assert {n: procs[n]["pid"] for n in ("count", "calm")} == pids, procs
    assert all(procs[n]["pm2_env"]["restart_time"] == 0 for n in ("count", "calm")), procs
    assert procs["off"]["pm2_env"]["status"] == "stopped"
    assert_each_app_once(pv, pids)
    assert_no_line_lost(pv, max(count_lines(pv)) + 1000)


@pytest.mark.timeout(90)
def test_an_app_that_died_while_no_daemon_ran_is_started_again_once(pv: Pyvm2) -> None:
    pids = start_three(pv)
    old = pv.daemon_pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: alive(old), lambda a: not a, what="the killed daemon to be gone")
    os.kill(pids["calm"], signal.SIGKILL)
    wait_for(lambda: alive(pids["calm"]), lambda a: not a, what="calm to be gone")

    pv.ok("list")
    calm = pv.wait_status("calm", "online")[0]
    assert calm["pid"] not in (None, 0, pids["calm"]), calm
    procs = {p["name"]: p for p in pv.jlist()}
    assert procs["count"]["pid"] == pids["count"], procs["count"]
    assert procs["off"]["pm2_env"]["status"] == "stopped"
    assert_each_app_once(pv, {"count": pids["count"], "calm": calm["pid"]})


@pytest.mark.timeout(90)
def test_a_daemon_whose_socket_was_removed_leaves_its_apps_to_the_next_daemon(pv: Pyvm2) -> None:
    pv.ok("start", str(pv.write_eco([pv.app("calm", "show_env.py")])))
    old = pv.daemon_pid()
    app_pid = pv.proc("calm")["pid"]
    (pv.home / "pyvm2.sock").unlink()
    wait_for(lambda: not alive(old), what="the unreachable daemon to leave", timeout=30)
    assert alive(app_pid), "the app must keep running for the next daemon"
    (calm,) = pv.jlist()
    assert (calm["pid"], calm["pm2_env"]["status"]) == (app_pid, "online")
    assert pv.daemon_pid() != old


@pytest.mark.timeout(90)
def test_a_daemon_whose_home_was_deleted_stops_its_apps_and_leaves(pv: Pyvm2) -> None:
    import shutil

    pv.ok("start", str(pv.write_eco([pv.app("calm", "show_env.py")])))
    old = pv.daemon_pid()
    app_pid = pv.proc("calm")["pid"]
    shutil.rmtree(pv.home)
    wait_for(lambda: not alive(old), what="the daemon of a deleted home to leave", timeout=30)
    wait_for(lambda: not alive(app_pid), what="its app to be stopped", timeout=30)
