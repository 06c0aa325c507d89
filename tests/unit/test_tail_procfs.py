"""The leaf helpers shared by the CLI and the daemon: tail_lines and /proc/<pid>/stat."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyvm2.procfs import PPID, STATE, stat_fields
from pyvm2.tail import tail_lines


def test_tail_lines_reads_the_last_lines(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(10_000)))
    assert tail_lines(path, 3) == [b"line 9997", b"line 9998", b"line 9999"]
    assert len(tail_lines(path, 5000)) == 5000
    assert tail_lines(path, 0) == []


def test_tail_lines_keeps_a_last_line_without_newline(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"a\nb\nc")
    assert tail_lines(path, 2) == [b"b", b"c"]
    assert tail_lines(path, 10) == [b"a", b"b", b"c"]


def test_tail_lines_with_a_byte_limit_drops_the_cut_line(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"x" * 100 + b"\nshort\nend\n")
    assert tail_lines(path, 10, max_bytes=20) == [b"short", b"end"]
    one = tmp_path / "one.log"
    one.write_bytes(b"y" * 1000)
    assert tail_lines(one, 5, max_bytes=10) == [b"y" * 10]


def test_tail_lines_of_a_missing_file_is_empty(tmp_path):
    assert tail_lines(tmp_path / "nope", 5) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_stat_fields_survive_a_command_name_with_spaces_and_parentheses(tmp_path):
    tricky = tmp_path / "a b) (c"
    tricky.symlink_to(sys.executable)
    child = subprocess.Popen([str(tricky), "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != tricky.name:
            assert time.monotonic() < deadline, "the child never ran under its tricky name"
            time.sleep(0.01)
        fields = stat_fields(child.pid)
        assert fields is not None
        assert fields[STATE] in (b"S", b"R", b"D")  # D: waiting for the disk on a busy machine
        assert int(fields[PPID]) == os.getpid()
    finally:
        child.kill()
        child.wait()
    assert stat_fields(child.pid) is None
