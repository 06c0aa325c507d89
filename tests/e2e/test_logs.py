"""`pyvm2 logs` and what ends up in the log files: prefixes, filters, follow mode, timestamps,
floods and bytes that are not UTF-8."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
from conftest import Pyvm2, wait_for


def start_ticker(pv: Pyvm2, name: str = "tick") -> None:
    eco = pv.write_eco([pv.app(name, "ticker.py", env={"TICK_S": "0.1"})])
    pv.ok("start", str(eco))
    pv.wait_log(name, "tick 5")
    pv.wait_log(name, "tock 5", stream="err")


def test_logs_nostream_shows_output_with_id_and_name_prefix(pv: Pyvm2) -> None:
    start_ticker(pv)
    r = pv.ok("logs", "tick", "--nostream")
    assert re.search(r"^0\|tick\s*\| tick \d+$", r.out, re.M), r
    assert re.search(r"^0\|tick\s*\| tock \d+$", r.out, re.M), r
    assert str(pv.log_path("tick")) in r.out


def test_logs_raw_prints_bare_lines(pv: Pyvm2) -> None:
    start_ticker(pv)
    r = pv.ok("logs", "tick", "--nostream", "--raw")
    lines = [ln for ln in (r.out + r.err).splitlines() if ln]
    assert lines, r
    assert all(re.fullmatch(r"(tick|tock) \d+", ln) for ln in lines), r


def test_logs_err_and_out_filter_the_streams(pv: Pyvm2) -> None:
    start_ticker(pv)
    err = pv.ok("logs", "tick", "--nostream", "--err")
    assert "| tock" in err.out and "| tick" not in err.out, err
    out = pv.ok("logs", "tick", "--nostream", "--out")
    assert "| tick" in out.out and "| tock" not in out.out, out


def test_logs_lines_limits_how_many_lines_are_shown(pv: Pyvm2) -> None:
    start_ticker(pv)
    r = pv.ok("logs", "tick", "--nostream", "--out", "--raw", "--lines", "3")
    lines = r.out.splitlines()
    assert len(lines) == 3, r
    numbers = [int(ln.split()[1]) for ln in lines]
    assert numbers == sorted(numbers) and numbers[-1] - numbers[0] == 2, r


class LineReader:
    """Collects a pipe's lines in a thread so a test can wait for one without blocking."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))


def test_logs_follow_mode_prints_new_lines_as_they_come(pv: Pyvm2) -> None:
    start_ticker(pv)
    shown = pv.ok("logs", "tick", "--nostream", "--out", "--raw", "--lines", "1").out.split()
    last = int(shown[-1])

    follow = pv.popen("logs", "tick", "--out")
    reader = LineReader(follow.stdout)

    def newest() -> int:
        found = [int(m.group(1)) for ln in list(reader.lines)
                 if (m := re.match(r"0\|tick\s*\| tick (\d+)$", ln))]
        return max(found, default=-1)

    wait_for(newest, lambda n: n > last + 3, what="new lines in `pyvm2 logs tick`")
    follow.terminate()
    assert follow.wait(10) is not None
    assert "Traceback" not in "\n".join(reader.lines)


def test_time_option_prefixes_each_line_and_keeps_a_last_line_without_newline(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("partial", "partial_line.py", time=True, autorestart=False)])
    pv.ok("start", str(eco))
    pv.wait_status("partial", "stopped")
    text = wait_for(lambda: pv.read_log("partial"), lambda s: "no newline" in s,
                    what="the last line of partial_line.py in its log")
    lines = text.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: "
    assert len(lines) == 3, lines
    assert re.fullmatch(stamp + "first line", lines[0]), lines
    assert re.fullmatch(stamp + "second line", lines[1]), lines
    assert re.fullmatch(stamp + "no newline at the end", lines[2]), lines


@pytest.mark.timeout(180)
def test_a_flood_of_output_with_invalid_utf8_never_stops_the_daemon(pv: Pyvm2) -> None:
    eco = pv.write_eco([pv.app("flood", "flood.py", env={"FLOOD_MB": "20"}),
                        pv.app("calm", "ticker.py", env={"TICK_S": "0.2"})])
    pv.ok("start", str(eco))
    daemon = pv.daemon_pid()
    # rotation may have moved the start of the flood elsewhere; the end is in the current file
    wait_for(lambda: pv.log_path("flood").read_bytes()[-4096:] if pv.log_path("flood").exists()
             else b"", lambda tail: b"flood done" in tail, timeout=60,
             what="the end of the 20 MB flood in its log")
    assert pv.daemon_pid() == daemon
    assert "pong" in pv.ok("ping").out
    assert pv.status("flood") == ["online"] and pv.status("calm") == ["online"]
    assert pv.proc("flood")["pm2_env"]["restart_time"] == 0

    # the current file and the rotated ones hold every byte, invalid UTF-8 written as is
    logged = b"".join(p.read_bytes() for p in (pv.home / "logs").glob("flood-out*"))
    assert b"bad utf-8: \xff\xfe\xc3\x28 \xed\xa0\x80 end\n" in logged
    assert b"\x80\x81 more bad bytes\n" in logged
    assert len(logged) >= 20 * 1024 * 1024, len(logged)

    r = pv.ok("logs", "flood", "--nostream", "--lines", "5")
    assert "flood done" in r.out
    # the daemon still serves the other app's output
    before = pv.read_log("calm").count("tick")
    wait_for(lambda: pv.read_log("calm").count("tick"), lambda n: n > before + 2,
             what="the calm app's log to keep growing")


def test_logs_of_an_unknown_app_is_an_error(pv: Pyvm2) -> None:
    start_ticker(pv)
    r = pv.run("logs", "nope", "--nostream")
    assert r.code == 1, r
    assert "Traceback" not in r.out + r.err
    assert "nope" in r.err


def test_logs_follow_stops_cleanly_on_sigint(pv: Pyvm2) -> None:
    start_ticker(pv)
    follow = pv.popen("logs", "tick")
    reader = LineReader(follow.stdout)
    wait_for(lambda: list(reader.lines), lambda ls: any("| tick" in ln for ln in ls),
             what="`pyvm2 logs tick` to print")
    follow.send_signal(2)
    try:
        code = follow.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("`pyvm2 logs` did not stop on SIGINT")
    assert code in (0, 130), code
    assert "Traceback" not in follow.stderr.read().decode(errors="replace")
