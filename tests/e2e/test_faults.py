"""Faults in the daemon's surroundings cost nothing: a bad config.json, stray signals."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import Pyvm2, alive, wait_for

BAD_CONFIGS = {
    "a number too large for an integer": '{"log_retain": 1e400, "log_max_size": "1M"}',
    "deeply nested JSON": '{"log_retain": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "a value of the wrong type": '{"log_compress": "yes", "log_max_size": [1]}',
    "not an object": "[1, 2, 3]",
    "not JSON at all": "log_retain = 3",
}


@pytest.mark.parametrize("what", BAD_CONFIGS)
def test_a_bad_config_json_is_reported_and_the_daemon_starts_anyway(pv: Pyvm2, what: str) -> None:
    pv.home.mkdir(mode=0o700, exist_ok=True)
    (pv.home / "config.json").write_text(BAD_CONFIGS[what])
    pv.ok("start", pv.app("t", "ticker.py")["script"], "--name", "t")
    pv.wait_status("t", "online")
    assert pv.ok("ping").code == 0
    log = (pv.home / "pyvm2.log").read_text()
    assert "ignoring" in log and "config.json" in log, log


def test_a_bad_value_keeps_its_default_and_the_good_ones_apply(pv: Pyvm2) -> None:
    pv.home.mkdir(mode=0o700, exist_ok=True)
    (pv.home / "config.json").write_text('{"log_retain": -3, "log_max_size": "1K"}')
    pv.ok("start", pv.app("t", "ticker.py")["script"], "--name", "t")
    log = (pv.home / "pyvm2.log").read_text()
    assert "ignoring log_retain" in log and "keeping 5" in log, log
    assert "log_max_size" not in log, log


@pytest.mark.parametrize("sig", ["SIGUSR1", "SIGALRM", "SIGPROF", "SIGVTALRM", "SIGIO", "SIGPWR"])
def test_stray_signals_do_not_end_the_daemon(pv: Pyvm2, sig: str) -> None:
    pv.ok("start", pv.app("t", "ticker.py")["script"], "--name", "t")
    pid = pv.daemon_pid()
    assert pid
    app_pid = pv.proc("t")["pid"]
    os.kill(pid, getattr(signal, sig))
    wait_for(lambda: (pv.home / "pyvm2.log").read_text(), lambda t: f"ignored signal {sig}" in t,
             what=f"the daemon to log {sig}")
    assert alive(pid) and pv.daemon_pid() == pid
    assert pv.proc("t")["pid"] == app_pid


def test_pid_and_log_files_are_never_written_through_planted_symlinks(pv: Pyvm2) -> None:
    shared = pv.workdir / "shared"
    shared.mkdir()
    secret = pv.workdir / "root-only.conf"
    secret.write_text("secret = 1\n")
    for name in ("t.pid", "t-0.pid", "t-out.log", "t-err.log"):
        (shared / name).symlink_to(secret)
    eco = pv.write_eco([pv.app("t", "ticker.py", pid_file=str(shared / "t.pid"),
                               out_file=str(shared / "t-out.log"),
                               error_file=str(shared / "t-err.log"))])
    pv.ok("start", str(eco))
    pv.wait_status("t", "online")
    pv.ok("flush", "t")
    pv.ok("stop", "t")
    assert secret.read_text() == "secret = 1\n"
    described = pv.ok("describe", "t").out
    assert "symbolic link" in described, described


def test_a_pid_file_naming_an_existing_file_is_neither_overwritten_nor_deleted(pv: Pyvm2) -> None:
    precious = pv.workdir / "precious.txt"
    precious.write_text("not a pid\n")
    eco = pv.write_eco([pv.app("t", "ticker.py", pid_file=str(precious))])
    pv.ok("start", str(eco))
    pv.wait_status("t", "online")
    pv.ok("stop", "t")
    assert precious.read_text() == "not a pid\n"
