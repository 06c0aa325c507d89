"""One bad app definition never takes the daemon down: it is refused at the door (the CLI and the
daemon share one validator), and one planted in the state file leaves that app errored with the
reason while every other app and command works."""

from __future__ import annotations

import json
import os
import signal

from conftest import Pyvm2, alive, fixture, wait_for
from helpers_more import connect, read_reply

NEVER = "0 0 31 2 *"   # valid fields, but the 31st of February never comes


def test_a_cron_pattern_that_never_matches_is_refused_and_everything_keeps_working(
        pv: Pyvm2) -> None:
    pv.ok("start", fixture("ticker.py"), "--name", "calm")
    daemon = pv.daemon_pid()
    r = pv.run("start", fixture("ticker.py"), "--name", "never", "--cron", NEVER)
    assert r.code == 2, r
    assert "Traceback" not in r.out + r.err, r
    assert r.first_err_line.startswith("[PYVM2][ERROR] "), r
    assert "never matches" in r.first_err_line and NEVER in r.first_err_line, r
    assert "hint:" in r.err, r
    assert [p["name"] for p in pv.jlist()] == ["calm"]
    assert "pong" in pv.ok("ping").out
    pv.ok("stop", "calm")
    pv.ok("restart", "calm")
    assert pv.status("calm") == ["online"]
    assert pv.daemon_pid() == daemon and alive(daemon)


def test_the_daemon_refuses_such_an_app_from_any_client_as_a_bad_request(pv: Pyvm2) -> None:
    pv.ok("ping")
    spec = {"name": "never", "script": fixture("ticker.py"), "cwd": str(pv.workdir),
            "cron_restart": NEVER}
    s = connect(pv, timeout=30)
    try:
        s.sendall(json.dumps({"id": 7, "cmd": "start", "args": {"apps": [spec]}}).encode() + b"\n")
        reply = json.loads(read_reply(s))
    finally:
        s.close()
    assert reply["id"] == 7 and reply["ok"] is False, reply
    assert reply["error"]["code"] == "bad_request", reply
    assert "apps[0] (never)" in reply["error"]["message"], reply
    assert "never matches" in reply["error"]["message"], reply
    assert pv.jlist() == []
    pv.ok("kill")


def test_an_unusable_app_planted_in_the_state_file_is_errored_and_the_rest_runs(
        pv: Pyvm2) -> None:
    pv.ok("start", fixture("ticker.py"), "--name", "good")
    pv.ok("start", fixture("ticker.py"), "--name", "planted", "--cron", "0 3 * * *")
    daemon = pv.daemon_pid()
    assert daemon is not None
    # SIGTERM: the daemon stops the apps but keeps them in the state file, to start them again
    os.kill(daemon, signal.SIGTERM)
    wait_for(lambda: alive(daemon), lambda up: not up, what="the daemon to exit")
    state_path = pv.home / "state.json"
    state = json.loads(state_path.read_text())
    planted = [e for e in state["procs"] if e["spec"]["name"] == "planted"]
    assert planted and all(e["desired"] == "running" for e in state["procs"]), state
    planted[0]["spec"]["cron_restart"] = NEVER
    state_path.write_text(json.dumps(state))

    r = pv.ok("list")      # starts a new daemon, which restores the state
    assert "never matches" in r.err, r
    pv.wait_status("good", "online")
    bad = pv.proc("planted")
    assert bad["pm2_env"]["status"] == "errored", bad
    reason = bad["pm2_env"]["status_reason"]
    assert "invalid definition" in reason and "never matches" in reason, reason
    assert "pong" in pv.ok("ping").out

    # asked for alone, it says why it cannot run; with others, the others are served
    r = pv.run("start", "planted")
    assert r.code != 0 and "Traceback" not in r.out + r.err, r
    assert "cannot run" in r.first_err_line and "never matches" in r.first_err_line, r
    pv.ok("restart", "all")
    pv.wait_status("good", "online")
    assert pv.status("planted") == ["errored"]

    # the daemon log has it, and the app goes away like any other
    assert "never matches" in (pv.home / "pyvm2.log").read_text()
    pv.ok("delete", "planted")
    assert [p["name"] for p in pv.jlist()] == ["good"]
    pv.ok("kill")
