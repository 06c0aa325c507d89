"""Log sinks: date prefixes on whole lines, rotation at line boundaries, write errors."""

from __future__ import annotations

import os
import time

import pytest

from pyvm2.daemon.logs import LogFile, LogSink, Rotation, format_dayjs

T = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1)) + 0.089


@pytest.mark.parametrize("fmt,expected", [
    ("YYYY-MM-DD HH:mm:ss", "2026-03-04 05:06:07"),
    ("YYYY-MM-DDTHH:mm:ss", "2026-03-04T05:06:07"),
    ("YY/M/D H:m:s.SSS", "26/3/4 5:6:7.089"),
    ("[at] hh:mm A", "at 05:06 AM"),
    ("ddd, MMM D", "Wed, Mar 4"),
])
def test_dayjs_formats(fmt, expected):
    assert format_dayjs(fmt, T) == expected


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_prefixed_lines_keep_partial_lines_until_their_newline(tmp_path):
    out = tmp_path / "o.log"
    sink = LogSink(str(out), str(tmp_path / "e.log"), None, "YYYY", lambda m: None)
    sink.feed("out", b"B1\nB2\nBpar")
    sink.feed("out", b"tial\nC")
    sink.flush_partial("out")
    year = time.strftime("%Y").encode()
    assert read(out) == b"".join(year + b": " + x + b"\n" for x in (b"B1", b"B2", b"Bpartial", b"C"))


def test_raw_output_is_written_as_is_including_invalid_utf8(tmp_path):
    out = tmp_path / "o.log"
    sink = LogSink(str(out), str(tmp_path / "e.log"), str(tmp_path / "all.log"), None, lambda m: None)
    sink.feed("out", b"\xff\xfe no newline")
    sink.feed("err", b"oops\n")
    assert read(out) == b"\xff\xfe no newline"
    assert read(tmp_path / "e.log") == b"oops\n"
    assert read(tmp_path / "all.log") == b"\xff\xfe no newlineoops\n"


def test_rotation_keeps_every_file_under_the_limit_and_every_line_whole(tmp_path):
    path = tmp_path / "app-out.log"
    f = LogFile(str(path), lambda m: None, Rotation(max_size=1000, keep=3))
    lines = [f"line {i:05d} {'x' * (i % 40)}\n".encode() for i in range(400)]
    chunk = b""
    for line in lines:
        chunk += line
        if len(chunk) > 300:
            f.write(chunk)
            chunk = b""
    f.write(chunk)
    files = [path] + [tmp_path / f"app-out.log.{i}" for i in (1, 2, 3)]
    assert not (tmp_path / "app-out.log.4").exists()
    for p in files:
        assert p.stat().st_size <= 1000, p
        assert read(p).endswith(b"\n")
    kept = b"".join(read(p) for p in reversed(files)).splitlines(keepends=True)
    assert kept == lines[-len(kept):]


def test_a_line_longer_than_the_limit_is_not_split(tmp_path):
    path = tmp_path / "a.log"
    f = LogFile(str(path), lambda m: None, Rotation(max_size=100, keep=2))
    f.write(b"short\n")
    f.write(b"y" * 150)
    f.write(b"y" * 50 + b"\nnext\n")
    assert read(tmp_path / "a.log.2") == b"short\n"
    assert read(tmp_path / "a.log.1") == b"y" * 200 + b"\n"
    assert read(path) == b"next\n"


def test_compressed_rotation_hands_compression_to_the_background(tmp_path):
    path = tmp_path / "c.log"
    jobs = []
    f = LogFile(str(path), lambda m: None, Rotation(max_size=50, keep=2, compress=True), jobs.append)
    f.write(b"a" * 40 + b"\n")
    f.write(b"b" * 40 + b"\n")
    assert len(jobs) == 1
    jobs[0]()
    assert (tmp_path / "c.log.1.gz").exists() and not (tmp_path / "c.log.1").exists()


def test_a_write_error_warns_once_drops_output_and_recovers(tmp_path):
    warnings = []
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "x.log"
    f = LogFile(str(path), warnings.append)
    f.RETRY_S = 0
    os.chmod(folder, 0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        f.write(b"lost\n")
        f.write(b"lost too\n")
        assert len(warnings) == 1 and "cannot write" in warnings[0]
    finally:
        os.chmod(folder, 0o700)
    f.write(b"back\n")
    assert read(path) == b"back\n"
    assert "again" in warnings[-1]


def test_enospc_on_dev_full_never_raises(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    warnings = []
    f = LogFile("/dev/full", warnings.append)
    f.write(b"x" * 10000)
    f.write(b"y\n")
    assert len(warnings) == 1 and "No space" in warnings[0]


_FSIZE_SCRIPT = r"""
import resource, sys
from pyvm2.daemon.logs import LogFile
warnings = []
f = LogFile(sys.argv[1], warnings.append)
f.RETRY_S = 0
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
f.write(b"first line\n")
f.write(b"second " + b"x" * 200)      # fails mid-line at the file-size limit
f.write(b" end of second\nthird ")     # rest of the dropped line, then the head of another
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
f.write(b"line\nfourth line\n")
print("\n".join(warnings))
"""


def test_a_write_that_fails_mid_line_drops_the_whole_line_and_never_glues_two(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "x.log"
    r = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(path)], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    assert read(path) == b"first line\nthird line\nfourth line\n"
    assert "cannot write" in r.stdout and "bytes were dropped" in r.stdout, r.stdout


def test_log_files_are_never_written_through_a_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"keep\n")
    link = tmp_path / "app.log"
    link.symlink_to(secret)
    warnings = []
    f = LogFile(str(link), warnings.append)
    f.write(b"planted\n")
    assert secret.read_bytes() == b"keep\n"
    assert len(warnings) == 1 and "symbolic link" in warnings[0], warnings


def test_an_idle_log_file_is_closed_and_opened_again_by_the_next_write(tmp_path) -> None:
    from pyvm2.daemon import logs

    path = tmp_path / "app-out.log"
    f = logs.LogFile(str(path), lambda _m: None)
    f.write(b"one\n")
    assert f.fd is not None
    assert logs.close_idle(idle_s=5.0, now=f.last_write + 1) == 0
    assert f.fd is not None
    assert logs.close_idle(idle_s=5.0, now=f.last_write + 5) >= 1
    assert f.fd is None
    f.write(b"two\n")
    assert f.fd is not None
    assert path.read_bytes() == b"one\ntwo\n"
    f.close()


def test_past_the_cap_the_least_recently_written_files_close_and_reopen_on_write(
        tmp_path, monkeypatch) -> None:
    from pyvm2.daemon import logs

    monkeypatch.setattr(logs, "MAX_OPEN", 8)
    files = [logs.LogFile(str(tmp_path / f"app{i}.log"), lambda _m: None) for i in range(40)]
    mid_line = files[0]
    mid_line.write(b"prompt> ")
    for i, f in enumerate(files):
        f.write(f"line {i}\n".encode())
        assert len([g for g in files if g.fd is not None]) <= 8
    assert mid_line.fd is not None or mid_line.at_line_start   # never cut inside a line
    assert files[-1].fd is not None
    for i, f in enumerate(files):
        f.write(f"again {i}\n".encode())
    for i, f in enumerate(files):
        text = (tmp_path / f"app{i}.log").read_bytes()
        assert text.endswith(f"line {i}\nagain {i}\n".encode()), text
        f.close()


def test_a_log_file_ending_mid_line_stays_open(tmp_path) -> None:
    from pyvm2.daemon import logs

    f = logs.LogFile(str(tmp_path / "a.log"), lambda _m: None)
    f.write(b"prompt> ")
    logs.close_idle(idle_s=0.0, now=f.last_write + 60)
    assert f.fd is not None
    f.close()


def test_prefixed_output_read_a_mib_at_a_time_keeps_every_line_whole(tmp_path):
    out = tmp_path / "o.log"
    sink = LogSink(str(out), str(out), None, "YYYY", lambda m: None)
    lines = [b"line %07d " % i + b"x" * (i % 150) for i in range(30000)]
    data = b"\n".join(lines) + b"\n"
    for at in range(0, len(data), 1 << 20):      # as a fast writer's pipe is read
        sink.feed("out", data[at:at + (1 << 20)])
    sink.flush_partial("out")
    year = time.strftime("%Y").encode()
    assert read(out) == b"".join(year + b": " + x + b"\n" for x in lines)
