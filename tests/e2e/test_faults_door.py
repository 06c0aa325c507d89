"""Faults at the door and around it: names that cannot become file names or would hide what they
say, a disk that fills under the home, a low descriptor limit, an update during a slow stop, and
saved lists that cannot be written or read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Pyvm2, wait_for


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
