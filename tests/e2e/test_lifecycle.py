"""Starting from an ecosystem file, the everyday commands and their targets, and `kill`."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import Pyvm2, alive, fixture, wait_for

JLIST_KEYS = ["name", "pm_id", "pid", "monit", "pm2_env"]
MONIT_KEYS = ["memory", "cpu"]
PM2_ENV_KEYS = ["status", "restart_time", "unstable_restarts", "pm_uptime", "exit_code", "pm_cwd",
                "pm_exec_path", "args", "exec_interpreter", "pm_out_log_path", "pm_err_log_path"]


def three_apps(pv: Pyvm2, **extra: dict) -> list[dict]:
    return [
        pv.app("alpha", "ticker.py", env={"TICK_S": "0.5"}, **extra.get("alpha", {})),
        pv.app("beta", "show_env.py", namespace="backend", **extra.get("beta", {})),
        pv.app("gamma", "show_env.py", namespace="backend", args=["one", "two"],
               **extra.get("gamma", {})),
    ]


def online_names(pv: Pyvm2) -> dict[str, int]:
    return {p["name"]: p["pid"] for p in pv.jlist() if p["pm2_env"]["status"] == "online"}


def test_start_ecosystem_file_runs_every_app_and_list_shows_them(pv: Pyvm2) -> None:
    eco = pv.write_eco(three_apps(pv))
    r = pv.ok("start", str(eco))
    for name in ("alpha", "beta", "gamma"):
        assert name in r.out, r

    procs = pv.jlist()
    assert sorted(p["name"] for p in procs) == ["alpha", "beta", "gamma"]
    for p in procs:
        assert p["pm2_env"]["status"] == "online", p
        assert isinstance(p["pid"], int) and p["pid"] > 0 and alive(p["pid"]), p

    for alias in ("list", "ls", "status", "l"):
        out = pv.ok(alias).out
        for name in ("alpha", "beta", "gamma"):
            assert re.search(rf"│\s*{name}\s*│", out), f"{alias}:\n{out}"
        assert "online" in out


def test_jlist_has_pm2_keys(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("gamma", "show_env.py", args=["one", "two"])])
    pv.ok("start", str(eco))
    [p] = pv.jlist()
    for key in JLIST_KEYS:
        assert key in p, key
    for key in MONIT_KEYS:
        assert key in p["monit"], key
    env = p["pm2_env"]
    for key in PM2_ENV_KEYS:
        assert key in env, key
    assert p["name"] == "gamma" and p["pm_id"] == 0
    assert env["status"] == "online"
    assert env["restart_time"] == 0 and env["unstable_restarts"] == 0
    assert isinstance(env["pm_uptime"], int) and env["pm_uptime"] > 1_000_000_000_000
    assert env["pm_exec_path"] == fixture("show_env.py")
    assert env["args"] == ["one", "two"]
    assert "python" in env["exec_interpreter"]
    assert env["pm_out_log_path"] == str(pv.home / "logs" / "gamma-out.log")
    assert env["pm_err_log_path"] == str(pv.home / "logs" / "gamma-error.log")
    assert env["pm_cwd"] == str(pv.workdir)


def test_start_returns_only_once_the_apps_are_online(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "ticker.py"), pv.app("beta", "show_env.py")])
    pv.ok("start", str(eco))
    # no waiting: the table `start` printed and the list right after it must be true already
    statuses = {p["name"]: p["pm2_env"]["status"] for p in pv.jlist()}
    assert statuses == {"alpha": "online", "beta": "online"}


def test_start_returns_once_the_app_runs_and_a_crash_shows_in_the_next_list(pv: Pyvm2) -> None:
    # as pm2: `start` of a script that crashes at once succeeds (it was started); what happened
    # next is in the list, with its reason
    eco = pv.write_eco([pv.app("crash", "crash_now.sh", max_restarts=0, min_uptime=5000)])
    r = pv.ok("start", str(eco))
    assert re.search(r"│\s*crash\s*│.*│\s*(online|stopping|errored)\s*│", r.out), r
    p = wait_for(lambda: pv.proc("crash"), lambda p: p["pm2_env"]["status"] == "errored",
                 what="the crash in the list")
    assert "exited with code 3" in p["pm2_env"]["status_reason"], p


def test_start_wait_of_a_crashing_app_returns_with_its_outcome(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("crash", "crash_now.sh", max_restarts=0, min_uptime=5000)])
    r = pv.run("start", str(eco), "--wait")
    assert "Traceback" not in r.out + r.err, r
    assert r.code == 1, r
    assert "crash" in r.err and "errored" in r.err and "exited with code 3" in r.err, r
    [p] = pv.jlist()
    assert p["pm2_env"]["status"] == "errored", p


def test_start_wait_of_a_crash_looping_app_says_it_crashed(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("crash", "crash_now.sh", max_restarts=50, min_uptime=5000)])
    r = pv.run("start", str(eco), "--wait")
    # the table `start` printed was true when printed: the crasher already exited once
    assert re.search(r"│\s*crash\s*│.*│\s*waiting restart\s*│", r.out), r
    assert r.code == 1, r
    assert "crash (0) crashed (waiting restart): exited with code 3" in r.err, r
    assert "started" in pv.read_log("crash")
    assert pv.proc("crash")["pm2_env"]["status"] in ("waiting restart", "launching", "online",
                                                     "stopping")


def test_start_wait_of_a_healthy_app_returns_once_it_stayed_up(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("tick", "ticker.py", min_uptime=800)])
    pv.ok("start", str(eco), "--wait")
    [p] = pv.jlist()
    assert p["pm2_env"]["status"] == "online", p
    assert time.time() * 1000 - p["pm2_env"]["pm_uptime"] >= 800, p
    pv.ok("restart", "tick", "--wait")
    [p] = pv.jlist()
    assert p["pm2_env"]["status"] == "online" and p["pm2_env"]["restart_time"] == 1, p
    assert time.time() * 1000 - p["pm2_env"]["pm_uptime"] >= 800, p


def test_starting_the_same_file_again_keeps_unchanged_apps_and_restarts_changed_ones(
        pv: Pyvm2) -> None:
    apps = three_apps(pv)
    eco = pv.write_eco(apps)
    pv.ok("start", str(eco))
    before = online_names(pv)
    assert set(before) == {"alpha", "beta", "gamma"}
    pv.ok("stop", "gamma")
    assert pv.status("gamma") == ["stopped"]

    apps[1]["env"] = {"CHANGED": "yes"}
    pv.write_eco(apps)
    pv.ok("start", str(eco))

    after = {p["name"]: p for p in pv.jlist()}
    assert len(after) == 3, after
    assert after["alpha"]["pid"] == before["alpha"], "an unchanged running app was restarted"
    assert after["alpha"]["pm2_env"]["restart_time"] == 0
    assert after["beta"]["pm2_env"]["status"] == "online"
    assert after["beta"]["pid"] != before["beta"], "a changed app kept its old process"
    assert after["gamma"]["pm2_env"]["status"] == "online", "a stopped app was not started"
    assert after["gamma"]["pid"] not in (0, None, before["gamma"])

    # the changed args reach the new process too
    apps[2]["args"] = ["three"]
    pv.write_eco(apps)
    pv.ok("start", str(eco))
    gamma = pv.proc("gamma")
    assert gamma["pm2_env"]["args"] == ["three"]
    pv.wait_log("gamma", '"argv": ["three"]')


def test_stop_restart_delete_accept_name_id_namespace_all_and_several_targets(pv: Pyvm2) -> None:
    eco = pv.write_eco(three_apps(pv))
    pv.ok("start", str(eco))
    ids = {p["name"]: p["pm_id"] for p in pv.jlist()}

    def statuses() -> dict[str, str]:
        return {p["name"]: p["pm2_env"]["status"] for p in pv.jlist()}

    pv.ok("stop", "alpha")
    assert statuses() == {"alpha": "stopped", "beta": "online", "gamma": "online"}
    assert pv.proc("alpha")["pid"] in (0, None)

    pv.ok("stop", str(ids["beta"]))
    assert statuses() == {"alpha": "stopped", "beta": "stopped", "gamma": "online"}

    pv.ok("restart", "alpha", "beta")
    assert statuses() == {"alpha": "online", "beta": "online", "gamma": "online"}

    pv.ok("stop", "backend")
    assert statuses() == {"alpha": "online", "beta": "stopped", "gamma": "stopped"}

    pv.ok("stop", "all")
    assert set(statuses().values()) == {"stopped"}

    pv.ok("start", "all")
    assert set(statuses().values()) == {"online"}

    pv.ok("delete", "gamma", str(ids["alpha"]))
    assert sorted(statuses()) == ["beta"]

    pv.ok("delete", "backend")
    assert pv.jlist() == []


def test_restart_increments_the_restart_count_and_reset_zeroes_it(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "ticker.py")])
    pv.ok("start", str(eco))
    first = pv.proc("alpha")
    assert first["pm2_env"]["restart_time"] == 0

    pv.ok("restart", "alpha")
    second = pv.proc("alpha")
    assert second["pm2_env"]["status"] == "online"
    assert second["pm2_env"]["restart_time"] == 1
    assert second["pid"] != first["pid"]
    assert not alive(first["pid"])

    pv.ok("restart", "0")
    assert pv.proc("alpha")["pm2_env"]["restart_time"] == 2
    table = pv.ok("list").out
    assert re.search(r"│\s*alpha\s*│.*│\s*2\s*│\s*online", table), table

    r = pv.ok("reset", "alpha")
    assert "0" in r.out
    assert pv.proc("alpha")["pm2_env"]["restart_time"] == 0
    assert pv.proc("alpha")["pm2_env"]["unstable_restarts"] == 0


def test_delete_stops_the_process_and_removes_it(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "ticker.py"), pv.app("beta", "show_env.py")])
    pv.ok("start", str(eco))
    pid = pv.proc("alpha")["pid"]
    pv.ok("delete", "alpha")
    assert not alive(pid), "delete left the process running"
    assert [p["name"] for p in pv.jlist()] == ["beta"]
    assert "alpha" not in pv.ok("list").out


@pytest.mark.parametrize("command", ["stop", "restart", "delete", "reset", "describe"])
def test_unknown_target_is_a_one_line_error(pv: Pyvm2, command: str) -> None:
    eco = pv.write_eco([pv.app("alpha", "show_env.py")])
    pv.ok("start", str(eco))
    r = pv.run(command, "nope")
    assert r.code == 1, r
    assert "Traceback" not in r.out + r.err, r
    errors = [ln for ln in r.err.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and "nope" in errors[0], r
    assert len(r.err.strip().splitlines()) <= 2, r
    assert pv.status("alpha") == ["online"]


def test_unknown_id_among_known_targets_changes_nothing(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "show_env.py")])
    pv.ok("start", str(eco))
    r = pv.run("stop", "alpha", "42")
    assert r.code == 1, r
    assert "Traceback" not in r.out + r.err, r
    assert pv.status("alpha") == ["online"]


def test_flush_empties_the_log_files(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("beta", "show_env.py"), pv.app("gamma", "show_env.py")])
    pv.ok("start", str(eco))
    pv.wait_log("beta", "argv")
    pv.wait_log("gamma", "argv")

    pv.ok("flush", "beta")
    assert pv.log_path("beta").stat().st_size == 0
    assert pv.read_log("gamma") != ""

    pv.ok("flush")
    assert pv.log_path("gamma").stat().st_size == 0
    assert pv.log_path("beta").stat().st_size == 0
    assert pv.status("beta") == ["online"] and pv.status("gamma") == ["online"]


def test_describe_shows_the_app_rows(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("gamma", "show_env.py", args=["one", "two"])])
    pv.ok("start", str(eco))
    for target in ("gamma", "0"):
        out = pv.ok("describe", target).out
        assert "Describing process with id 0 - name gamma" in out, out
        for row, value in (("status", "online"), ("name", "gamma"), ("restarts", "0"),
                           ("script path", fixture("show_env.py")),
                           ("out log path", str(pv.log_path("gamma"))),
                           ("exec cwd", str(pv.workdir))):
            assert re.search(rf"│\s*{re.escape(row)}\s*│\s*{re.escape(value)}", out), (row, out)


def test_ping_answers_pong(pv: Pyvm2) -> None:
    r = pv.ok("ping")
    assert "pong" in r.out
    assert pv.daemon_pid() is not None and alive(pv.daemon_pid())


def test_kill_leaves_no_process_behind(pv: Pyvm2) -> None:
    eco = pv.write_eco(three_apps(pv) + [pv.app("stubborn", "ignore_signals.py",
                                                kill_timeout=500)])
    pv.ok("start", str(eco))
    pids = [p["pid"] for p in pv.jlist()]
    daemon = pv.daemon_pid()
    assert daemon and alive(daemon) and len(pids) == 4

    r = pv.ok("kill")
    assert "Stopped" in r.out
    assert not alive(daemon), "the daemon survived kill"
    assert [p for p in pids if alive(p)] == [], "apps survived kill"
    assert not (pv.home / "pyvm2.sock").exists(), "kill left the socket behind"

    # a second kill with no daemon is harmless and does not start one
    r = pv.ok("kill")
    assert pv.daemon_pid() is None or not alive(pv.daemon_pid())


def test_jlist_is_valid_json_with_no_daemon_running_yet(pv: Pyvm2) -> None:
    r = pv.ok("jlist")
    assert json.loads(r.out) == []


def test_stop_restart_delete_accept_the_ecosystem_file_as_target(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "ticker.py"), pv.app("beta", "show_env.py")])
    other = pv.write_eco([pv.app("other", "show_env.py")], name="other.json")
    pv.ok("start", str(eco))
    pv.ok("start", str(other))

    pv.ok("stop", str(eco))
    assert {p["name"]: p["pm2_env"]["status"] for p in pv.jlist()} == {
        "alpha": "stopped", "beta": "stopped", "other": "online"}
    pv.ok("restart", str(eco))
    assert {p["name"]: p["pm2_env"]["status"] for p in pv.jlist()} == {
        "alpha": "online", "beta": "online", "other": "online"}
    pv.ok("delete", str(eco))
    assert [p["name"] for p in pv.jlist()] == ["other"]


def test_kill_leaves_no_traceback_in_the_daemon_log(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("alpha", "ticker.py")])
    pv.ok("start", str(eco))
    pv.ok("kill")
    log = (pv.home / "pyvm2.log").read_text(errors="replace")
    assert "daemon exited" in log
    assert "Traceback" not in log, log
