"""The daemon's file writes refuse links, foreign files and pid files that are not pid files."""

from __future__ import annotations

import os

import pytest

from pyvm2.daemon import safefs


def test_a_pid_file_is_written_and_removed_only_while_it_holds_our_pid(tmp_path):
    path = str(tmp_path / "pids" / "a.pid")
    safefs.write_pid(path, 1234)
    assert open(path).read() == "1234\n"
    safefs.write_pid(path, 99)  # an old pid file is replaced
    safefs.remove_pid(path, 1234)  # not ours any more: kept
    assert open(path).read() == "99\n"
    safefs.remove_pid(path, 99)
    assert not os.path.exists(path)


def test_a_pid_file_that_names_another_file_is_neither_overwritten_nor_removed(tmp_path):
    other = tmp_path / "important.conf"
    other.write_text("setting = 1\n")
    with pytest.raises(OSError, match="does not hold a pid"):
        safefs.write_pid(str(other), 1234)
    safefs.remove_pid(str(other), 1234)
    assert other.read_text() == "setting = 1\n"


def test_a_symlinked_pid_file_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "root-only"
    target.write_text("42\n")
    link = tmp_path / "app.pid"
    link.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        safefs.write_pid(str(link), 1234)
    safefs.remove_pid(str(link), 42)
    assert target.read_text() == "42\n" and link.is_symlink()


def test_truncate_refuses_a_symlink_and_a_hard_link(tmp_path):
    target = tmp_path / "data"
    target.write_text("precious\n")
    (tmp_path / "sym.log").symlink_to(target)
    os.link(target, tmp_path / "hard.log")
    for name in ("sym.log", "hard.log"):
        with pytest.raises(OSError):
            safefs.truncate(str(tmp_path / name))
    assert target.read_text() == "precious\n"
    safefs.truncate(str(tmp_path / "missing.log"))


def test_devices_such_as_dev_null_can_be_written(tmp_path):
    fd = safefs.open_append("/dev/null")
    try:
        assert os.write(fd, b"x") == 1
    finally:
        os.close(fd)
